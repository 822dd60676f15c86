"""Typed configuration of the simulated cell (``config/cells/<name>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dexstack.paths import data_path
from dexstack.sim.human_hand import HumanHandConfig

SHAPES = ("box", "cylinder", "sphere")


class CellConfigError(ValueError):
    """A cell configuration is missing or malformed."""


@dataclass(frozen=True)
class TableConfig:
    size_m: tuple[float, float, float] = (1.0, 1.2, 0.04)
    center_xyz_m: tuple[float, float, float] = (0.35, 0.0, -0.02)
    rgba: tuple[float, float, float, float] = (0.55, 0.45, 0.35, 1.0)


@dataclass(frozen=True)
class ObjectConfig:
    name: str = "cube"
    shape: str = "box"
    size_m: tuple[float, ...] = (0.05, 0.05, 0.05)
    mass_kg: float = 0.1
    friction: float = 1.0
    initial_xyz_m: tuple[float, float, float] = (0.5, 0.0, 0.025)
    initial_rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] = (0.85, 0.2, 0.2, 1.0)
    # Optional cube-map image on the object (e.g. AprilTags on the faces of a box), a path relative to the package
    # data root or absolute. One 3x4 grid image in MuJoCo's ".U..LFRB.D.." layout; ``rgba`` multiplies it.
    texture_file: str | None = None


@dataclass(frozen=True)
class PhysicsConfig:
    timestep_s: float = 0.001
    gains: dict[str, dict[str, float]] = field(default_factory=lambda: {"arm": {"kp": 2000.0, "kv": 150.0},
                                                                          "hand": {"kp": 10.0, "kv": 0.3}})
    joint_damping: dict[str, float] = field(default_factory=lambda: {"arm": 5.0, "hand": 0.05})
    armature: dict[str, float] = field(default_factory=lambda: {"arm": 0.1, "hand": 0.002})


@dataclass(frozen=True)
class CameraTruthConfig:
    """The sim camera's TRUE pose and intrinsics (what renders). The calibration file is only perception's estimate.

    ``xyz_m``/``quat_xyzw``: T_parent_camera of the optical frame (parent = the file's parent_frame); unset = the
    calibration file's pose (a perfectly calibrated cell). ``intrinsics``: a calibration-style intrinsics mapping; unset = the file's. ``perturb_*``:
    a rigid offset applied in the camera frame on top (T_true = T_nominal @ T_perturb), so a stale file is wrong.
    """

    xyz_m: tuple[float, float, float] | None = None
    quat_xyzw: tuple[float, float, float, float] | None = None
    intrinsics: dict | None = None
    perturb_xyz_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    perturb_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if (self.xyz_m is None) != (self.quat_xyzw is None):
            raise ValueError("camera.xyz_m and camera.quat_xyzw go together")
        if self.quat_xyzw is not None and abs(sum(q * q for q in self.quat_xyzw) - 1.0) > 1e-3:
            raise ValueError(f"camera.quat_xyzw {self.quat_xyzw} is not a unit quaternion")


@dataclass(frozen=True)
class CellConfig:
    name: str = "tabletop"
    robot_profile: str = "panda_allegro"
    calibration: str = "sim_tabletop"
    table: TableConfig = field(default_factory=TableConfig)
    object: ObjectConfig = field(default_factory=ObjectConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    camera: CameraTruthConfig = field(default_factory=CameraTruthConfig)
    # A calibration board mounted on the robot (config/calibration_targets/<name>.yaml: board + mount); none if unset.
    calibration_target: str | None = None
    human_hand: HumanHandConfig = field(default_factory=HumanHandConfig)  # the operator's rendered hand
    operator_calibration: str | None = None  # a second RGB-D camera watching the operator (calibration name)


def texture_path(texture_file: str) -> Path:
    """Absolute path of an object texture: absolute as given, else relative to the package data root."""
    path = Path(texture_file)
    if not path.is_absolute():
        path = data_path(texture_file)
    if not path.is_file():
        raise ValueError(f"object.texture_file '{texture_file}' not found (looked for {path})")
    return path


def _tuple(section: dict, key: str, default: tuple) -> tuple:
    return tuple(float(v) for v in section.get(key, default))


def _camera_truth(c: dict) -> CameraTruthConfig:
    known = set(CameraTruthConfig.__dataclass_fields__)
    if set(c) - known:
        raise ValueError(f"unknown camera keys {sorted(set(c) - known)} (known: {sorted(known)})")
    opt = {k: tuple(float(v) for v in c[k]) for k in ("xyz_m", "quat_xyzw", "perturb_xyz_m", "perturb_rpy_deg")
           if c.get(k) is not None}
    return CameraTruthConfig(intrinsics=dict(c["intrinsics"]) if c.get("intrinsics") else None, **opt)


def _human_hand(section: dict) -> HumanHandConfig:
    known = set(HumanHandConfig.__dataclass_fields__)
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"human_hand: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    return HumanHandConfig(**{k: tuple(float(x) for x in v) if isinstance(v, list) else v for k, v in section.items()})


def load_cell_config(name_or_path: str) -> CellConfig:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = data_path("config", "cells", f"{name_or_path}.yaml")
    if not path.is_file():
        raise CellConfigError(f"cell configuration '{name_or_path}' not found (looked for {path})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        t, o, p = raw.get("table", {}), raw.get("object", {}), raw.get("physics", {})
        d_t, d_o, d_p = TableConfig(), ObjectConfig(), PhysicsConfig()
        obj = ObjectConfig(
            name=str(o.get("name", d_o.name)),
            shape=str(o.get("shape", d_o.shape)),
            size_m=_tuple(o, "size_m", d_o.size_m),
            mass_kg=float(o.get("mass_kg", d_o.mass_kg)),
            friction=float(o.get("friction", d_o.friction)),
            initial_xyz_m=_tuple(o, "initial_xyz_m", d_o.initial_xyz_m),
            initial_rpy_rad=_tuple(o, "initial_rpy_rad", d_o.initial_rpy_rad),
            rgba=_tuple(o, "rgba", d_o.rgba),
            texture_file=str(o["texture_file"]) if o.get("texture_file") else None,
        )
        if obj.shape not in SHAPES:
            raise ValueError(f"object.shape '{obj.shape}' is not one of {SHAPES}")
        if obj.texture_file is not None:
            texture_path(obj.texture_file)  # fail at load time, with the path, if it is missing
        physics = PhysicsConfig(
            timestep_s=float(p.get("timestep_s", d_p.timestep_s)),
            gains={k: {kk: float(vv) for kk, vv in v.items()} for k, v in p.get("gains", d_p.gains).items()},
            joint_damping={k: float(v) for k, v in p.get("joint_damping", d_p.joint_damping).items()},
            armature={k: float(v) for k, v in p.get("armature", d_p.armature).items()},
        )
        if not 0 < physics.timestep_s <= 0.002:
            raise ValueError(f"physics.timestep_s {physics.timestep_s} must be in (0, 0.002] (>= 500 Hz physics)")
        return CellConfig(
            camera=_camera_truth(raw.get("camera") or {}),
            calibration_target=str(raw["calibration_target"]) if raw.get("calibration_target") else None,
            name=str(raw.get("name", path.stem)),
            robot_profile=str(raw.get("robot_profile", "panda_allegro")),
            calibration=str(raw.get("calibration", "sim_tabletop")),
            table=TableConfig(size_m=_tuple(t, "size_m", d_t.size_m),
                              center_xyz_m=_tuple(t, "center_xyz_m", d_t.center_xyz_m),
                              rgba=_tuple(t, "rgba", d_t.rgba)),
            object=obj,
            physics=physics,
            human_hand=_human_hand(raw.get("human_hand", {})),
            operator_calibration=str(raw["operator_calibration"]) if raw.get("operator_calibration") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CellConfigError(f"{path}: {exc}") from exc
