"""The strict config loader: typed dataclasses from YAML, unknown keys refused, every shipped config loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
import yaml

from dexstack import config_loader as cl
from dexstack.calibration.camera import CalibrationError, load_camera_calibration
from dexstack.calibration.target import TargetError, load_target
from dexstack.control.scripted import MotionError, load_motion
from dexstack.paths import data_path
from dexstack.perception.objects import ObjectConfigError, load_object_model
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import load_manifest
from dexstack.retarget.config import METHODS, load_retarget_config
from dexstack.robot.profile import ProfileError, load_profile
from dexstack.sim.config import CellConfigError, load_cell_config


@dataclasses.dataclass(frozen=True)
class Inner:
    gain: float
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    mode: Literal["clip", "reject"] = "clip"
    count: int = 1
    enabled: bool = False
    scale: float | None = None
    sizes: tuple[float, ...] = ()
    table: dict[str, float] = dataclasses.field(default_factory=dict)
    source: Path | None = cl.internal()

    def __post_init__(self):
        if self.count < 1:
            raise ValueError(f"count {self.count} must be >= 1")


def test_build_converts_nested_typed_values():
    raw = {"name": "a", "inner": {"gain": 2, "xyz": [1, 2, 3]}, "mode": "reject", "count": 3, "enabled": True,
           "scale": "1e-3", "sizes": [1, 2.5], "table": {"x": 1}}
    out = cl.build(Outer, raw, "f.yaml", source=Path("f.yaml"))
    assert out == Outer(name="a", inner=Inner(gain=2.0, xyz=(1.0, 2.0, 3.0)), mode="reject", count=3, enabled=True,
                        scale=0.001, sizes=(1.0, 2.5), table={"x": 1.0})
    assert isinstance(out.inner.gain, float) and out.source == Path("f.yaml")
    assert cl.build(Outer, {"name": "b", "inner": {"gain": 1}, "scale": None}, "f.yaml").scale is None
    assert cl.yaml_keys(Outer) == ("name", "inner", "mode", "count", "enabled", "scale", "sizes", "table")


@pytest.mark.parametrize("raw, message", [
    ({"name": "a", "inner": {"gain": 1}, "cuont": 2},
     "unknown key 'cuont' in f.yaml: known keys are name, inner, mode, count, enabled, scale, sizes, table"),
    ({"name": "a", "inner": {"gain": 1, "gian": 2}},
     "unknown key 'gian' in f.yaml at 'inner': known keys are gain, xyz"),
    ({"name": "a", "inner": {"gain": 1}, "source": "x"}, "unknown key 'source'"),  # internal fields are not keys
    ({"name": "a"}, "missing key 'inner' in f.yaml"),
    ({"name": "a", "inner": {}}, "missing key 'gain' in f.yaml at 'inner'"),
    ({"name": 3, "inner": {"gain": 1}}, "f.yaml at 'name': expected a string, got int 3"),
    ({"name": "a", "inner": {"gain": "fast"}}, "at 'inner.gain': expected a number, got str 'fast'"),
    ({"name": "a", "inner": {"gain": True}}, "at 'inner.gain': expected a number"),
    ({"name": "a", "inner": {"gain": 1, "xyz": [1, 2]}}, "at 'inner.xyz': expected a list of 3 values"),
    ({"name": "a", "inner": {"gain": 1}, "count": 1.5}, "at 'count': expected an integer"),
    ({"name": "a", "inner": {"gain": 1}, "enabled": "yes please"}, "at 'enabled': expected true or false"),
    ({"name": "a", "inner": {"gain": 1}, "mode": "clamp"}, "at 'mode': 'clamp' is not one of \\['clip', 'reject'\\]"),
    ({"name": "a", "inner": {"gain": 1}, "sizes": [1, "x"]}, "at 'sizes\\[1\\]': expected a number"),
    ({"name": "a", "inner": {"gain": 1}, "table": [1]}, "at 'table': expected a mapping"),
    ({"name": "a", "inner": {"gain": 1}, "count": 0}, "f.yaml: count 0 must be >= 1"),  # __post_init__, file named
    ([1, 2], "f.yaml: expected a mapping"),
])
def test_build_refuses_with_the_reason(raw, message):
    with pytest.raises(cl.ConfigError, match=message):
        cl.build(Outer, raw, "f.yaml")


def test_read_yaml_and_resolver_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(cl.ConfigError, match="bad.yaml: not valid YAML"):
        cl.read_yaml(bad)
    with pytest.raises(cl.ConfigError, match=r"unknown cell 'nope': not found .*known names are \['tabletop'"):
        cl.resolve_data_file("nope", "config/cells", what="cell")
    with pytest.raises(cl.ConfigError, match="not found"):
        cl.resolve_data_file(tmp_path / "missing.yaml", "config/cells", what="cell")
    assert cl.resolve_data_file("tabletop", "config/cells", what="cell") == data_path("config", "cells",
                                                                                       "tabletop.yaml")


# ------------------------------------------------------------------------------ every config kind, every file
def _description():
    from dexstack.robot.description import load_description

    return load_description("panda_allegro")


def _load_motion(path):
    """A motion names one robot's joints: ``demo_<profile>.yaml`` is loaded for that profile, others for the default."""
    from dexstack.robot.description import load_description
    from tests.profiles import PROFILES

    profile = next((p for p in PROFILES if Path(path).stem.endswith(f"_{p}")), "panda_allegro")
    return load_motion(str(path), load_description(profile))


def _load_retarget(path):
    return [load_retarget_config(path, method) for method in METHODS
            if method in yaml.safe_load(Path(path).read_text())["methods"]]


def _load_manifest(path):
    return load_manifest(Path(path).parent)


# kind: (files, loader, error type, where the bad key goes: a key path into the mapping, [] = top level)
KINDS = {
    "cell": ("config/cells/*.yaml", load_cell_config, CellConfigError, ["object"]),
    "robot_profile": ("config/robots/*.yaml", load_profile, ProfileError, ["hand", "mount"]),
    "retarget": ("config/retarget/*.yaml", _load_retarget, ValueError, []),
    "retarget_method": ("config/retarget/*.yaml", _load_retarget, ValueError, ["methods", "dexpilot"]),
    "object": ("config/objects/*.yaml", load_object_model, ObjectConfigError, ["tags"]),
    "calibration": ("calibration/*/camera.yaml", load_camera_calibration, CalibrationError, ["intrinsics"]),
    "motion": ("config/motions/*.yaml", _load_motion, MotionError, []),
    "policy_manifest": ("policies/*/policy.yaml", _load_manifest, PolicyError, ["action"]),
    "calibration_target": ("config/calibration_targets/*.yaml", load_target, TargetError, ["mount"]),
}


def _files(pattern: str) -> list[Path]:
    root = data_path()
    files = sorted(root.glob(pattern))
    assert files, f"no shipped file matches {pattern}"
    return files


SHIPPED = [pytest.param(kind, path, id=f"{kind}:{path.relative_to(data_path()).as_posix()}")
           for kind, (pattern, *_rest) in KINDS.items() for path in _files(pattern)]


@pytest.mark.parametrize("kind, path", SHIPPED)
def test_every_shipped_config_loads(kind, path):
    assert KINDS[kind][1](str(path))


def test_a_motion_made_for_another_robot_is_refused_naming_the_robot(tmp_path):
    from dexstack.robot.description import load_description
    from tests.profiles import PROFILES

    descriptions = [load_description(p) for p in PROFILES]
    pairs = [(a, b) for a in descriptions for b in descriptions if a.arm_joints[0] not in b.arm_joints]
    if not pairs:
        pytest.skip("every shipped profile has the same arm joints")
    for made_for, other in pairs:
        motion = tmp_path / f"{made_for.profile.name}.yaml"
        keyframes = [{"t": 0.0}, {"t": 1.0, "arm_rad": {made_for.arm_joints[0]: 0.1}}]
        motion.write_text(yaml.safe_dump({"keyframes": keyframes}))
        assert load_motion(str(motion), made_for)
        with pytest.raises(MotionError, match=f"'{made_for.arm_joints[0]}', which is not among the arm joints of "
                                              f"robot '{other.profile.name}'"):
            load_motion(str(motion), other)


def _has_section(raw, keypath: list[str]) -> bool:
    for key in keypath:
        if not isinstance(raw, dict) or not isinstance(raw.get(key), dict):
            return False
        raw = raw[key]
    return True


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_key_is_refused_with_the_key_named(kind, tmp_path):
    pattern, loader, error, keypath = KINDS[kind]
    source = next(p for p in _files(pattern) if _has_section(yaml.safe_load(p.read_text()), keypath))
    raw = yaml.safe_load(source.read_text())
    section = raw
    for key in keypath:
        section = section[key]
    section["low_pass_alpa"] = 0.5
    # same folder layout as the shipped one (bundles keep their weights next to the manifest)
    target = tmp_path / source.relative_to(data_path())
    if kind == "policy_manifest":
        import shutil

        shutil.copytree(source.parent, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(error, match=r"unknown key 'low_pass_alpa' in .*: known keys are \w+") as info:
        loader(str(target))
    if kind != "policy_manifest":
        assert str(target) in str(info.value)  # the file is named
    else:
        assert "policy.yaml" in str(info.value)
