"""Where the package's data lives, and how ``package://`` URIs resolve.

Data folders (``config/``, ``launch/``, ``calibration/``, ``policies/``) sit at the repository root in a source
checkout (``pip install -e .``) and under ``share/dexstack`` after ``colcon build`` / ``pip install .``.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from functools import cache
from pathlib import Path

PACKAGE_NAME = "dexstack"
DATA_DIRS = ("config", "launch", "calibration", "policies")


class ResourceNotFoundError(FileNotFoundError):
    """A data file or ``package://`` resource could not be located; the message says where we looked."""


@cache
def share_dir() -> Path:
    """The folder holding ``config/``, ``launch/``, ... for this install of dexstack."""
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / "package.xml").is_file() and (source_root / "config").is_dir():
        return source_root
    for prefix in _prefixes():
        candidate = prefix / "share" / PACKAGE_NAME
        if (candidate / "config").is_dir():
            return candidate
    raise ResourceNotFoundError(
        f"cannot find dexstack's data folders (config/, launch/): looked in {source_root} and share/{PACKAGE_NAME} "
        f"under {[str(p) for p in _prefixes()]}"
    )


def data_path(*parts: str) -> Path:
    """Absolute path of a packaged data file, e.g. ``data_path('config', 'robots', 'panda_allegro.yaml')``."""
    return share_dir().joinpath(*parts)


def _prefixes() -> list[Path]:
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(Path(sys.prefix))
    purelib = Path(sysconfig.get_paths()["purelib"])
    prefixes.append(purelib / "cmeel.prefix")  # where cmeel wheels (pin, example-robot-data) install share/
    return prefixes


def package_share(package: str) -> Path:
    """Share folder of a ROS/cmeel package: ``$DEXSTACK_PACKAGE_PATH``, the ament index, then pip prefixes."""
    search = [Path(p) for p in os.environ.get("DEXSTACK_PACKAGE_PATH", "").split(os.pathsep) if p]
    for root in search:
        if (root / package).is_dir():
            return root / package
    for prefix in _prefixes():
        candidate = prefix / "share" / package
        if candidate.is_dir():
            return candidate
    raise ResourceNotFoundError(
        f"package '{package}' not found: set DEXSTACK_PACKAGE_PATH to the folder containing it, or install it "
        f"(searched {[str(p) for p in search]} and share/ under {[str(p) for p in _prefixes()]})"
    )


def resolve_uri(uri: str, relative_to: Path | None = None) -> Path:
    """Resolve ``package://pkg/rest``, ``file://path``, an absolute path, or a path relative to ``relative_to``."""
    if uri.startswith("package://"):
        package, _, rest = uri[len("package://"):].partition("/")
        path = package_share(package) / rest
    elif uri.startswith("file://"):
        path = Path(uri[len("file://"):])
    else:
        path = Path(uri)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
    if not path.exists():
        raise ResourceNotFoundError(f"'{uri}' resolves to {path}, which does not exist")
    return path
