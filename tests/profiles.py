"""Every shipped robot profile and retargeting config, for tests parametrized over them (as dex-retargeting's
tests run over every shipped hand config): adding ``config/robots/<name>.yaml`` or ``config/retarget/<hand>.yaml``
adds its tests, with nothing to edit here."""

from __future__ import annotations

from dexstack.config_loader import read_yaml
from dexstack.paths import data_path

PROFILES = tuple(sorted(p.stem for p in data_path("config", "robots").glob("*.yaml")))
RETARGET_CONFIGS = tuple(sorted(p.stem for p in data_path("config", "retarget").glob("*.yaml")))
CELLS = tuple(sorted(p.stem for p in data_path("config", "cells").glob("*.yaml")))


def cell_profile(cell: str) -> str:
    """The robot profile a shipped cell config names."""
    return read_yaml(data_path("config", "cells", f"{cell}.yaml"))["robot_profile"]


def cell_for(profile: str) -> str:
    """A shipped cell config of ``profile`` (its plain tabletop when there are several)."""
    cells = [c for c in CELLS if cell_profile(c) == profile]
    assert cells, f"no config/cells/*.yaml uses robot profile '{profile}': every shipped profile needs a sim cell"
    return min(cells, key=len)


def sim_cell_config(profile: str):
    """The cell config of :func:`cell_for` loaded (for ``SimCell(config, with_camera=False)``)."""
    from dexstack.sim.config import load_cell_config

    return load_cell_config(cell_for(profile))
