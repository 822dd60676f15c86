"""Retargeting configuration: ``config/retarget/<hand>.yaml`` -> :class:`HandRetargetConfig` (one method).

A file describes one robot hand (link names, where the human hand frame ``H`` sits on it, scale) and the methods
it can be retargeted with (``methods: {vector, position, dexpilot}``); shared settings at the top level may be
overridden per method. The cost minimised is the one dex-retargeting / AnyTeleop users know, so their parameter
values carry over::

    E(q) = 1/K sum_k w_k SmoothL1_beta(|| p_a_k(q) - p_b_k(q) - t_k ||) + reg_weight * ||q - q_prev||^2

with ``beta = huber_delta_m`` and ``t_k`` the scaled human vector (or position) of term ``k``. Robot link names
are checked against the hand model when a retargeter is built (:meth:`HandRetargetConfig.check_links`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from dexstack.config_loader import ConfigError, check_keys, read_yaml, resolve_data_file
from dexstack.paths import data_path
from dexstack.retarget.hand_model import FrameSpec
from dexstack.retarget.keypoints import NUM_KEYPOINTS

METHODS = ("vector", "position", "dexpilot")
HAND_SIDES = ("right", "left")


@dataclass(frozen=True)
class SolverConfig:
    """Warm-started, box-constrained Gauss-Newton / Levenberg-Marquardt settings (per retarget call)."""

    max_iterations: int = 10
    step_tol_rad: float = 1e-3  # stop when the largest joint step is below this
    damping: float = 1e-6  # Levenberg-Marquardt term added to the Gauss-Newton Hessian
    max_step_rad: float = 0.5  # largest joint change per iteration (trust region)


@dataclass(frozen=True)
class VectorTerm:
    """Robot vector ``p_task - p_origin`` (links) matches ``scaling * (kp[human_task] - kp[human_origin])``."""

    origin_link: str
    task_link: str
    human_origin: int
    human_task: int
    weight: float = 1.0


@dataclass(frozen=True)
class PointTerm:
    """Robot link position (hand root frame) matches ``T_root_H * (scaling * (kp[human] - kp[0]))``."""

    link: str
    human: int
    weight: float = 1.0


@dataclass(frozen=True)
class DexPilotSpec:
    """DexPilot (Handa et al., 2020): wrist->fingertip vectors plus fingertip-pair vectors whose targets switch to
    a pinch (``eta_*_m`` apart, high weight) when the human fingertips are close, with hysteresis.

    Fingertip 0 is the thumb. Pairs (thumb, finger) are "primary" pinches: projected when the human distance
    drops below ``project_dist_m``, released above ``escape_dist_m``. A pair of two non-thumb fingers is
    projected (kept ``eta_finger_m`` apart) while both pinch the thumb and are closer than ``project_dist_m``.
    """

    wrist_link: str
    wrist_human: int
    fingertip_links: tuple[str, ...]
    fingertip_human: tuple[int, ...]
    project_dist_m: float = 0.03
    escape_dist_m: float = 0.05
    eta_thumb_m: float = 1e-4
    eta_finger_m: float = 0.03
    weight_thumb_pinch: float = 200.0
    weight_finger_pinch: float = 400.0
    weight_wrist: float = 10.0


@dataclass(frozen=True)
class HandRetargetConfig:
    """One retargeting method for one robot hand (units: m, rad)."""

    name: str
    robot_profile: str
    method: str  # "vector" | "position" | "dexpilot"
    human_frame: FrameSpec  # the robot's analogue of the human hand frame H (pose in its parent link)
    hand_side: str = "right"  # the human hand it is retargeted from: "right" | "left" (keypoints.py builds H per side)
    scaling: float = 1.0  # robot length / human length
    huber_delta_m: float = 0.02
    reg_weight: float = 4e-3  # weight of ||q - q_prev||^2 (rad^-2, relative to the averaged SmoothL1 loss)
    low_pass_alpha: float = 1.0  # output filter q_out = a q + (1 - a) q_out_prev; 1 = off
    solver: SolverConfig = field(default_factory=SolverConfig)
    vectors: tuple[VectorTerm, ...] = ()
    points: tuple[PointTerm, ...] = ()
    dexpilot: DexPilotSpec | None = None
    keypoint_links: tuple[str | None, ...] = ()  # robot analogue of each human keypoint (synthetic data, checks)
    source: Path | None = None

    def links(self) -> set[str]:
        """Every robot link the method refers to."""
        names = {self.human_frame.name}
        names |= {t.origin_link for t in self.vectors} | {t.task_link for t in self.vectors}
        names |= {t.link for t in self.points}
        if self.dexpilot is not None:
            names |= {self.dexpilot.wrist_link, *self.dexpilot.fingertip_links}
        names |= {n for n in self.keypoint_links if n is not None}
        return names

    def check_links(self, known_links: tuple[str, ...] | list[str] | set[str], rigid_to_root: bool) -> None:
        """``ValueError`` if a link is unknown to the hand model or ``human_frame`` moves with the joints."""
        where = self.source or self.name
        unknown = sorted(self.links() - set(known_links) - {self.human_frame.name})
        if unknown:
            raise ValueError(f"{where}: unknown robot link(s) {unknown} (the hand has {sorted(known_links)})")
        if not rigid_to_root:
            raise ValueError(f"{where}: human_frame.parent_link '{self.human_frame.parent_link}' moves with the "
                             "hand joints; it must be rigidly attached to the hand root (e.g. the palm)")


# Keys each section of a file may hold (anything else is refused, naming the known keys).
_SHARED_KEYS = ("human_frame", "scaling", "huber_delta_m", "reg_weight", "low_pass_alpha", "solver")
_TOP_KEYS = ("robot_profile", "hand_side", "default_method", *_SHARED_KEYS, "keypoint_links", "methods")
_METHOD_KEYS = {
    "vector": ("type", *_SHARED_KEYS, "vectors"),
    "position": ("type", *_SHARED_KEYS, "points"),
    "dexpilot": ("type", *_SHARED_KEYS, "wrist_link", "wrist_human", "fingertips",
                 *(f.name for f in fields(DexPilotSpec) if f.name not in ("wrist_link", "wrist_human",
                                                                           "fingertip_links", "fingertip_human"))),
}
_HUMAN_FRAME_KEYS = ("name", "parent_link", "xyz_m", "axes", "rpy_rad")
_SOLVER_KEYS = tuple(f.name for f in fields(SolverConfig))


class RetargetConfigNotFound(ConfigError, FileNotFoundError):
    """No retargeting config of that name or path."""


class _Reader:
    """Typed access to a YAML mapping with error messages that name the key and the file. ``known``: the keys the
    section may hold (others are refused by the shared strict loader's rule)."""

    def __init__(self, raw: Any, where: str, known: tuple[str, ...] | None = None):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
        if known is not None:
            check_keys(raw, known, where)
        self.raw, self.where = raw, where

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.raw:
            if default is ...:
                raise ValueError(f"{self.where}: missing '{key}'")
            return default
        return self.raw[key]

    def number(self, key: str, default: Any = ..., *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False) -> float:
        value = self.get(key, default)
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.where}.{key}: expected a number, got {value!r}") from None
        if not np.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and x > hi):
            bound = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
            raise ValueError(f"{self.where}.{key}={x} is out of range {bound}")
        return x

    def sub(self, key: str, known: tuple[str, ...] | None = None) -> _Reader:
        return _Reader(self.get(key), f"{self.where}.{key}", known)


def _index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{where}: human keypoint index must be an integer, got {value!r}")
    if not 0 <= int(value) < NUM_KEYPOINTS:
        raise ValueError(f"{where}: human keypoint index {value} is out of range 0..{NUM_KEYPOINTS - 1}")
    return int(value)


def _link(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: expected a link name, got {value!r}")
    return value


def _vec3(value: Any, where: str) -> tuple[float, float, float]:
    try:
        v = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected 3 numbers, got {value!r}") from None
    if len(v) != 3 or not all(np.isfinite(v)):
        raise ValueError(f"{where}: expected 3 finite numbers, got {value!r}")
    return v  # type: ignore[return-value]


def _human_frame(r: _Reader) -> FrameSpec:
    check_keys(r.raw, _HUMAN_FRAME_KEYS, r.where)
    if r.has("axes") == r.has("rpy_rad"):
        raise ValueError(f"{r.where}: give exactly one of 'axes' (H's x/y/z axes in the parent frame) or 'rpy_rad'")
    if r.has("axes"):
        axes = r.sub("axes", ("x", "y", "z"))
        R = np.column_stack([_vec3(axes.get(k), f"{axes.where}.{k}") for k in ("x", "y", "z")])
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError(f"{axes.where}: x, y, z must be orthonormal unit vectors with z = x cross y")
    else:
        import pinocchio as pin

        R = pin.rpy.rpyToMatrix(*_vec3(r.get("rpy_rad"), f"{r.where}.rpy_rad"))
    return FrameSpec(
        name=_link(r.get("name"), f"{r.where}.name"),
        parent_link=_link(r.get("parent_link"), f"{r.where}.parent_link"),
        xyz_m=_vec3(r.get("xyz_m", [0, 0, 0]), f"{r.where}.xyz_m"),
        R_parent_frame=tuple(tuple(float(x) for x in row) for row in R),
    )


def _solver(r: _Reader) -> SolverConfig:
    d = SolverConfig()
    iters = r.get("max_iterations", d.max_iterations)
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"{r.where}.max_iterations must be an integer >= 1, got {iters!r}")
    check_keys(r.raw, _SOLVER_KEYS, r.where)
    return SolverConfig(
        max_iterations=iters,
        step_tol_rad=r.number("step_tol_rad", d.step_tol_rad, lo=0.0, lo_open=True),
        damping=r.number("damping", d.damping, lo=0.0),
        max_step_rad=r.number("max_step_rad", d.max_step_rad, lo=0.0, lo_open=True),
    )


def _list(r: _Reader, key: str) -> list[Any]:
    value = r.get(key)
    if not isinstance(value, list) or not value:
        raise ValueError(f"{r.where}.{key}: expected a non-empty list")
    return value


def _vectors(r: _Reader) -> tuple[VectorTerm, ...]:
    out = []
    for i, raw in enumerate(_list(r, "vectors")):
        v = _Reader(raw, f"{r.where}.vectors[{i}]", ("origin", "task", "human", "weight"))
        human = v.get("human")
        if not isinstance(human, list) or len(human) != 2:
            raise ValueError(f"{v.where}.human: expected [origin_index, task_index], got {human!r}")
        out.append(VectorTerm(
            origin_link=_link(v.get("origin"), f"{v.where}.origin"),
            task_link=_link(v.get("task"), f"{v.where}.task"),
            human_origin=_index(human[0], f"{v.where}.human[0]"),
            human_task=_index(human[1], f"{v.where}.human[1]"),
            weight=v.number("weight", 1.0, lo=0.0, lo_open=True),
        ))
    return tuple(out)


def _points(r: _Reader) -> tuple[PointTerm, ...]:
    out = []
    for i, raw in enumerate(_list(r, "points")):
        p = _Reader(raw, f"{r.where}.points[{i}]", ("link", "human", "weight"))
        out.append(PointTerm(link=_link(p.get("link"), f"{p.where}.link"),
                             human=_index(p.get("human"), f"{p.where}.human"),
                             weight=p.number("weight", 1.0, lo=0.0, lo_open=True)))
    return tuple(out)


def _dexpilot(r: _Reader) -> DexPilotSpec:
    tips = _list(r, "fingertips")
    if not 2 <= len(tips) <= 5:
        raise ValueError(f"{r.where}.fingertips: DexPilot needs 2 to 5 fingertips (thumb first), got {len(tips)}")
    readers = [_Reader(t, f"{r.where}.fingertips[{i}]", ("link", "human")) for i, t in enumerate(tips)]
    d = DexPilotSpec(wrist_link="", wrist_human=0, fingertip_links=(), fingertip_human=())
    spec = DexPilotSpec(
        wrist_link=_link(r.get("wrist_link"), f"{r.where}.wrist_link"),
        wrist_human=_index(r.get("wrist_human", 0), f"{r.where}.wrist_human"),
        fingertip_links=tuple(_link(t.get("link"), f"{t.where}.link") for t in readers),
        fingertip_human=tuple(_index(t.get("human"), f"{t.where}.human") for t in readers),
        project_dist_m=r.number("project_dist_m", d.project_dist_m, lo=0.0, lo_open=True),
        escape_dist_m=r.number("escape_dist_m", d.escape_dist_m, lo=0.0, lo_open=True),
        eta_thumb_m=r.number("eta_thumb_m", d.eta_thumb_m, lo=0.0),
        eta_finger_m=r.number("eta_finger_m", d.eta_finger_m, lo=0.0),
        weight_thumb_pinch=r.number("weight_thumb_pinch", d.weight_thumb_pinch, lo=0.0, lo_open=True),
        weight_finger_pinch=r.number("weight_finger_pinch", d.weight_finger_pinch, lo=0.0, lo_open=True),
        weight_wrist=r.number("weight_wrist", d.weight_wrist, lo=0.0, lo_open=True),
    )
    if spec.escape_dist_m < spec.project_dist_m:
        raise ValueError(f"{r.where}: escape_dist_m {spec.escape_dist_m} < project_dist_m {spec.project_dist_m} "
                         "(the release distance must not be below the pinch distance)")
    if len(set(spec.fingertip_links)) != len(spec.fingertip_links):
        raise ValueError(f"{r.where}.fingertips: a link is listed twice")
    return spec


def _keypoint_links(value: Any, where: str) -> tuple[str | None, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) != NUM_KEYPOINTS:
        raise ValueError(f"{where}: expected a list of {NUM_KEYPOINTS} link names (or null), "
                         f"got {len(value) if isinstance(value, list) else value!r}")
    return tuple(None if v is None else _link(v, f"{where}[{i}]") for i, v in enumerate(value))


def config_path(name_or_path: str | Path) -> Path:
    """``allegro_right`` -> ``config/retarget/allegro_right.yaml``; a YAML path is returned as is."""
    return resolve_data_file(name_or_path, "config/retarget", what="retargeting config", error=RetargetConfigNotFound,
                             known_as="configs")


def retarget_config_for(robot_profile: str) -> str:
    """The shipped retargeting config for ``robot_profile``: what teleop uses when none is given. The
    ``config/retarget/*.yaml`` whose ``robot_profile`` names it, else the one made for a profile with the same hand
    description (the same hand on another arm). Exactly one must match."""
    from dexstack.robot.profile import load_profile

    root = data_path("config", "retarget")
    made_for = {p.stem: raw.get("robot_profile") for p in sorted(root.glob("*.yaml"))
                if isinstance(raw := read_yaml(p), Mapping)}
    matches = [name for name, profile in made_for.items() if profile == robot_profile]
    if not matches:
        hand = load_profile(robot_profile).hand_description_path()
        matches = [name for name, profile in made_for.items()
                   if profile and load_profile(profile).hand_description_path() == hand]
    if len(matches) != 1:
        found = "none" if not matches else f"several ({matches})"
        raise RetargetConfigNotFound(f"no single retargeting config for robot profile '{robot_profile}' in {root}: "
                                     f"{found} is made for it or its hand; give one (retarget_config) or add "
                                     f"config/retarget/<hand>.yaml with 'robot_profile: {robot_profile}'")
    return matches[0]


def load_retarget_config(name_or_path: str | Path, method: str | None = None) -> HandRetargetConfig:
    """Load one method (default: the file's ``default_method``) of a retargeting config file."""
    path = config_path(name_or_path)
    return parse_retarget_config(read_yaml(path), method=method, where=str(path), source=path)


def parse_retarget_config(raw: Any, method: str | None = None, where: str = "retarget config",
                          source: Path | None = None) -> HandRetargetConfig:
    """Validate a parsed YAML mapping and build the config of ``method``; ``ValueError`` says what is wrong."""
    top = _Reader(raw, where, _TOP_KEYS)
    methods = top.sub("methods", METHODS)
    for name in methods.raw:  # every configured method is checked, not only the one loaded
        methods.sub(name, _METHOD_KEYS[name])
    method = method if method is not None else top.get("default_method", None)
    if method is None:
        raise ValueError(f"{where}: no method given and no 'default_method'")
    if method not in METHODS:
        raise ValueError(f"{where}: unknown retargeting method '{method}': use one of {list(METHODS)}")
    if not methods.has(method):
        raise ValueError(f"{where}: method '{method}' is not configured (configured: {sorted(methods.raw)})")
    hand_side = top.get("hand_side", "right")
    if hand_side not in HAND_SIDES:
        raise ValueError(f"{where}.hand_side: expected one of {list(HAND_SIDES)}, got {hand_side!r}")
    m = methods.sub(method)
    kind = m.get("type", method)
    if kind != method:
        raise ValueError(f"{m.where}.type '{kind}' does not match the method name '{method}'")

    def pick(key: str) -> _Reader:  # the method's value if it has one, else the file's
        return m if m.has(key) else top

    config = HandRetargetConfig(
        name=f"{source.stem if source else 'retarget'}:{method}",
        robot_profile=str(top.get("robot_profile")),
        method=method,
        hand_side=hand_side,
        human_frame=_human_frame(pick("human_frame").sub("human_frame")),
        scaling=pick("scaling").number("scaling", 1.0, lo=0.0, lo_open=True),
        huber_delta_m=pick("huber_delta_m").number("huber_delta_m", 0.02, lo=0.0, lo_open=True),
        reg_weight=pick("reg_weight").number("reg_weight", 4e-3, lo=0.0),
        low_pass_alpha=pick("low_pass_alpha").number("low_pass_alpha", 1.0, lo=0.0, hi=1.0, lo_open=True),
        solver=_solver(pick("solver").sub("solver")) if pick("solver").has("solver") else SolverConfig(),
        keypoint_links=_keypoint_links(top.get("keypoint_links", None), f"{where}.keypoint_links"),
        source=source,
    )
    if method == "vector":
        config = replace(config, vectors=_vectors(m))
    elif method == "position":
        config = replace(config, points=_points(m))
    else:
        config = replace(config, dexpilot=_dexpilot(m))
    return config
