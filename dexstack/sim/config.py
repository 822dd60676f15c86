"""Typed configuration of the simulated cell (``config/cells/<name>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from dexstack.config_loader import ConfigError, build, read_yaml, resolve_data_file
from dexstack.paths import data_path
from dexstack.sim.human_hand import HumanHandConfig

SHAPES = ("box", "cylinder", "sphere", "mesh")


class CellConfigError(ConfigError):
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
    # shape "mesh": an STL file (metres, object frame; absolute or relative to the package data root). MuJoCo
    # collides it through its convex hull (the shipped meshes are convex).
    mesh_file: str | None = None

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"object.shape '{self.shape}' is not one of {SHAPES}")
        if (self.shape == "mesh") != (self.mesh_file is not None):
            raise ValueError("object.mesh_file is needed for (and only for) object.shape 'mesh'")
        if self.mesh_file is not None:
            texture_path(self.mesh_file, what="object.mesh_file")
        if self.texture_file is not None:
            texture_path(self.texture_file)  # fail at load time, with the path, if it is missing


@dataclass(frozen=True)
class PhysicsConfig:
    timestep_s: float = 0.001
    gains: dict[str, dict[str, float]] = field(default_factory=lambda: {"arm": {"kp": 2000.0, "kv": 150.0},
                                                                          "hand": {"kp": 10.0, "kv": 0.3}})
    joint_damping: dict[str, float] = field(default_factory=lambda: {"arm": 5.0, "hand": 0.05})
    armature: dict[str, float] = field(default_factory=lambda: {"arm": 0.1, "hand": 0.002})
    # Dry friction (N m) per part; a part not named keeps the description's (the example-robot-data Allegro URDF
    # says 5 N m per joint, more than a 10 N m/rad servo overcomes within 0.5 rad: fingers stall short of targets).
    frictionloss: dict[str, float] = field(default_factory=dict)
    # MuJoCo's friction impedance ratio (option impratio): at 1 its soft friction constraints let a grasped object
    # creep out of a static grip (measured: a lifted cube slid out of the shipped policy's held pinch within ~3 s,
    # 10 cm down); at 3 the same hold kept it within 1.4 cm for 5 s (at 10: 1.1 cm). Higher values also make sliding
    # stiffer: the open-loop push replay's error grew 3.9 -> 4.9 -> 5.6 cm at 1 -> 3 -> 10, so 3, not more.
    impratio: float = 3.0

    def __post_init__(self):
        if not 0 < self.timestep_s <= 0.002:
            raise ValueError(f"physics.timestep_s {self.timestep_s} must be in (0, 0.002] (>= 500 Hz physics)")
        if not 1.0 <= self.impratio <= 100.0:
            raise ValueError(f"physics.impratio {self.impratio} must be in [1, 100]")


@dataclass(frozen=True)
class CameraTruthConfig:
    """The sim camera's TRUE pose and intrinsics (what renders). The calibration file is only perception's estimate.

    ``xyz_m``/``quat_xyzw``: T_parent_camera of the optical frame (parent = the file's parent_frame); unset = the
    calibration file's pose (a perfectly calibrated cell). ``intrinsics``: a calibration-style intrinsics mapping;
    unset = the file's. ``perturb_*``: a rigid offset applied in the camera frame on top
    (T_true = T_nominal @ T_perturb), so a stale file is wrong.
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
class RenderConfig:
    """How the cell's cameras render (every camera of the cell, in every process: one image of one state).

    ``multisamples``: anti-aliasing samples per pixel of the offscreen buffer (MuJoCo ``visual.quality.offsamples``).
    Measured on the 2-core workstation (Mesa llvmpipe, 640x480 RGB-D, tabletop): 4 (MuJoCo's default) 50.6 ms of CPU
    per frame, 0 21.5 ms; the depth image is bit-identical, the colour image differs only on edges (0.7 % of the
    pixels by more than 8 levels; perception's cube pose error 0.43 -> 0.40 mm by ICP, 0.16 -> 0.30 deg by tags alone).
    The default keeps MuJoCo's 4; the ``tabletop`` cell (the deployed policy graph's) sets 0: at 15 Hz its camera is
    then ~0.3 of a core instead of ~0.75, which the rest of that graph (physics, safety gate, perception, policy)
    needs on 2 cores. Calibration cells keep 4 (sub-pixel board corners).
    """

    multisamples: int = 4

    def __post_init__(self) -> None:
        if self.multisamples not in (0, 2, 4, 8, 16):
            raise ValueError(f"render.multisamples {self.multisamples} must be one of 0, 2, 4, 8, 16")


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
    render: RenderConfig = field(default_factory=RenderConfig)


def texture_path(texture_file: str, what: str = "object.texture_file") -> Path:
    """Absolute path of an object texture (or mesh): absolute as given, else relative to the package data root."""
    path = Path(texture_file)
    if not path.is_absolute():
        path = data_path(texture_file)
    if not path.is_file():
        raise ValueError(f"{what} '{texture_file}' not found (looked for {path})")
    return path


def object_from_model(name: str, xyz_m: tuple[float, float, float] | None = None,
                      rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> ObjectConfig:
    """The cell object of ``config/objects/<name>.yaml`` (shape, mass, friction, colour), resting at ``xyz_m``
    (default: 0.5 m in front of the robot, its bottom on the table). Raises ObjectConfigError listing the known
    objects for an unknown name."""
    from dexstack.perception.objects import load_object_model

    model = load_object_model(name)
    if xyz_m is None:
        xyz_m = (0.5, 0.0, model.rest_height_m)
    return ObjectConfig(name=model.name, shape=model.shape, size_m=model.size_m or (0.0,), mass_kg=model.mass_kg,
                        friction=model.friction, initial_xyz_m=tuple(map(float, xyz_m)),
                        initial_rpy_rad=tuple(map(float, rpy_rad)), rgba=model.rgba,
                        mesh_file=str(model.mesh_path) if model.mesh_path is not None else None)


def with_object(cell: CellConfig, name: str, xyz_m: tuple[float, float, float] | None = None,
                rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> CellConfig:
    """``cell`` with its object replaced by ``config/objects/<name>.yaml`` (see :func:`object_from_model`)."""
    return replace(cell, object=object_from_model(name, xyz_m, rpy_rad))


def load_cell_config(name_or_path: str) -> CellConfig:
    """``tabletop`` -> ``config/cells/tabletop.yaml`` (or a YAML path), read strictly (unknown keys refused)."""
    path = resolve_data_file(name_or_path, "config/cells", what="cell configuration", error=CellConfigError)
    raw = read_yaml(path, CellConfigError)
    config = build(CellConfig, raw, str(path), error=CellConfigError)
    if isinstance(raw, dict) and "name" not in raw:
        config = replace(config, name=path.stem)
    return config
