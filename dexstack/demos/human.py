"""Scripted human demonstrations for the simulated cell: the rendered human hand (``dexstack/sim/human_hand.py``)
reaches the cube, grasps it and moves it (lift, push/slide, rotate in place, pick-and-place, tilt), parameterised
and randomised by a seed, in view of the scene camera that perception uses.

A demo is an object path ``T_base_object(u)``, ``u`` in [0, 1], and a grasp ``T_object_wrist`` fixed while the hand
holds the object (the sim's grasp weld carries the cube), so the wrist follows ``T_base_object(u) T_object_wrist``.
The hand comes from the robot's left (+y side of the table) or right (-y side), palm down, fingers across the
cube's top: the cube's camera-facing side stays visible to the scene camera (at +x, looking back at the robot).
The robot stays at home, behind the cube as the camera sees it.

Phases (seconds, divided by ``speed``): hand open at the pre-grasp pose (0-1), reach (1-2.2), close (2.2-2.8),
grasp (the weld) and manipulate (2.8-5.3), hold still (5.3-6.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from dexstack.transforms import make_transform, rpy_to_matrix, so3_exp

KINDS = ("lift", "push", "rotate", "pick_place", "tilt")
PHASES_S = (1.0, 2.2, 2.8, 5.3, 6.3)  # end of: show, reach, close, manipulate, hold
CUBE_HALF_M = 0.025
# The wrist above and beside the cube centre for a palm-down grasp across the top (hand frame H: x toward the
# fingers, z out of the palm), in the frame with x along the fingers' horizontal direction and z up.
GRASP_WRIST_OFFSET_M = np.array([-0.075, 0.0, 0.075])
# ... and shifted toward the robot (base frame): the camera-facing half of the cube stays visible. Measured on the
# scene camera: with the palm resting on the cube (0.05 high, no shift) the depth fit slid 3.7 cm up onto the hand
# and its coverage fell under the node's 0.2; with these, coverage 0.65-0.8 and no bias, from either side.
GRASP_SHIFT_BASE_M = np.array([-0.02, 0.0, 0.0])
PREGRASP_OFFSET_M = np.array([-0.10, 0.0, 0.08])  # added to the grasp's wrist position (same frame)
# The hand shape on the cube: fingers wrapped over the top, thumb on the near side (JOINTS order).
CUBE_GRASP_Q = np.array([0.6, 0.5, 0.3, 0.3, *(0.0, 0.6, 0.5, 0.3), *(0.0, 0.6, 0.5, 0.3),
                         *(0.05, 0.6, 0.5, 0.3), *(0.1, 0.6, 0.5, 0.3)])


@dataclass(frozen=True)
class DemoSpec:
    """One demonstration's parameters (all that makes it reproducible)."""

    kind: str
    seed: int = 0
    object_xy_m: tuple[float, float] = (0.5, 0.0)
    object_yaw_rad: float = 0.0
    # direction the fingers point, about z from the object's x axis (people align a grasp with the cube's faces):
    # pi/2 = across the cube toward its +y face
    approach_yaw_rad: float = math.pi / 2
    speed: float = 1.0
    lift_m: float = 0.10
    displacement_m: tuple[float, float] = (0.0, 0.08)  # push and pick_place
    rotate_rad: float = 0.6
    tilt_rad: float = 0.7
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown demo kind '{self.kind}' (known: {', '.join(KINDS)})")
        if not 0.2 <= self.speed <= 3.0:
            raise ValueError(f"demo speed {self.speed} outside [0.2, 3]")
        if not 0.0 <= self.lift_m <= 0.3:
            raise ValueError(f"lift_m {self.lift_m} outside [0, 0.3]")

    @property
    def duration_s(self) -> float:
        return PHASES_S[-1] / self.speed

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}_s{self.seed}"


def sample_demo(kind: str, seed: int) -> DemoSpec:
    """Random parameters of a ``kind`` demo from ``seed`` (positions, distances, angles, speed, hand approach)."""
    if kind not in KINDS:
        raise ValueError(f"unknown demo kind '{kind}' (known: {', '.join(KINDS)})")
    rng = np.random.default_rng([KINDS.index(kind), seed])
    side = 1.0 if rng.uniform() < 0.5 else -1.0  # fingers toward +y (hand from -y) or toward -y
    spec = DemoSpec(kind=kind, seed=seed,
                    object_xy_m=(float(rng.uniform(0.46, 0.54)), float(rng.uniform(-0.05, 0.05))),
                    object_yaw_rad=float(rng.uniform(-0.3, 0.3)),
                    approach_yaw_rad=float(side * math.pi / 2 + rng.uniform(-0.12, 0.12)),
                    speed=float(rng.uniform(0.85, 1.15)))
    angle = float(rng.uniform(-math.pi, math.pi))
    if kind == "lift":
        spec = replace(spec, lift_m=float(rng.uniform(0.06, 0.14)))
    elif kind == "push":
        d = float(rng.uniform(0.05, 0.10))
        spec = replace(spec, displacement_m=(d * math.cos(angle) * 0.5, d * math.sin(angle)))
    elif kind == "rotate":
        spec = replace(spec, rotate_rad=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 0.8)))
    elif kind == "pick_place":
        d = float(rng.uniform(0.08, 0.14))
        spec = replace(spec, lift_m=float(rng.uniform(0.05, 0.09)),
                       displacement_m=(d * math.cos(angle) * 0.5, d * math.sin(angle)))
    else:
        spec = replace(spec, lift_m=float(rng.uniform(0.05, 0.09)),
                       tilt_rad=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 0.9)))
    return spec


def smooth_step(s):
    """Minimum-jerk time scaling of s in [0, 1] (zero velocity and acceleration at both ends)."""
    s = np.clip(s, 0.0, 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


def object_path(spec: DemoSpec, u: float, T_base_object0: np.ndarray) -> np.ndarray:
    """T_base_object at manipulation progress ``u`` in [0, 1] from the start pose ``T_base_object0``."""
    T = T_base_object0.copy()
    u = min(1.0, max(0.0, float(u)))
    s = float(smooth_step(u))
    if spec.kind == "lift":
        T[2, 3] += spec.lift_m * s
    elif spec.kind == "push":  # slid on the table
        T[:2, 3] += np.asarray(spec.displacement_m) * s
    elif spec.kind == "rotate":  # lifted a little, turned, put down
        T[2, 3] += 0.02 * math.sin(math.pi * min(1.0, u / 0.9))
        T[:3, :3] = rpy_to_matrix((0.0, 0.0, spec.rotate_rad * s)) @ T[:3, :3]
    elif spec.kind == "pick_place":  # up, across, down
        up, across, down = (float(smooth_step(v)) for v in (u / 0.3, (u - 0.3) / 0.4, (u - 0.7) / 0.3))
        T[2, 3] += spec.lift_m * (up - down)
        T[:2, 3] += np.asarray(spec.displacement_m) * across
    else:  # tilt: lift, turn about the fingers' horizontal axis (pour-like) and hold it turned
        up, turn = float(smooth_step(u / 0.35)), float(smooth_step((u - 0.35) / 0.65))
        T[2, 3] += spec.lift_m * up
        a = spec.approach_yaw_rad + math.atan2(T_base_object0[1, 0], T_base_object0[0, 0])
        axis = np.array([math.cos(a), math.sin(a), 0.0])
        T[:3, :3] = so3_exp(axis * spec.tilt_rad * turn) @ T[:3, :3]
    return T


class HumanDemo:
    """The demo as the rendered hand's command over time: ``(T_base_H, q_rad, grasp)`` at ``t`` seconds, for an
    object that starts at ``T_base_object0`` (where the cube is: the person looks before reaching)."""

    def __init__(self, spec: DemoSpec, T_base_object0: np.ndarray, T_base_rest: np.ndarray):
        from dexstack.sim.human_hand import POSES  # noqa: PLC0415

        self.spec = spec
        self.T_obj0 = np.asarray(T_base_object0, dtype=float)
        self.T_rest = np.asarray(T_base_rest, dtype=float)
        a = spec.approach_yaw_rad + math.atan2(self.T_obj0[1, 0], self.T_obj0[0, 0])  # in the base frame
        # Hand frame H in the base frame: x along the fingers (horizontal, yaw a), z down (out of the palm).
        R_hand = rpy_to_matrix((math.pi, 0.0, 0.0))
        R_hand = rpy_to_matrix((0.0, 0.0, a)) @ R_hand
        R_yaw = rpy_to_matrix((0.0, 0.0, a))
        p_grasp = self.T_obj0[:3, 3] + R_yaw @ GRASP_WRIST_OFFSET_M + GRASP_SHIFT_BASE_M
        T_grasp = make_transform(p_grasp, R_hand)
        self.T_object_wrist = np.linalg.inv(self.T_obj0) @ T_grasp
        self.T_pregrasp = make_transform(p_grasp + R_yaw @ PREGRASP_OFFSET_M, R_hand)
        self.q_open, self.q_relaxed, self.q_grasp = POSES["open"], POSES["relaxed"], CUBE_GRASP_Q

    @property
    def duration_s(self) -> float:
        return self.spec.duration_s

    def onset_s(self) -> float:
        """When the object starts moving (the manipulation phase begins)."""
        return PHASES_S[2] / self.spec.speed

    def object_at(self, t_s: float) -> np.ndarray:
        """Where the scripted motion puts the object at ``t_s`` (ground truth of the script, for tests)."""
        a, b = PHASES_S[2] / self.spec.speed, PHASES_S[3] / self.spec.speed
        return object_path(self.spec, (t_s - a) / (b - a), self.T_obj0)

    def __call__(self, t_s: float) -> tuple[np.ndarray, np.ndarray, bool]:
        show, reach, close, manip, _ = (p / self.spec.speed for p in PHASES_S)
        t = max(0.0, t_s)
        if t <= show:
            return self.T_pregrasp.copy(), self.q_open.copy(), False
        if t <= reach:
            s = float(smooth_step((t - show) / (reach - show)))
            T = self.T_pregrasp.copy()
            T[:3, 3] = (1 - s) * self.T_pregrasp[:3, 3] + s * (self.T_obj0 @ self.T_object_wrist)[:3, 3]
            return T, (1 - s) * self.q_open + s * self.q_relaxed, False
        if t <= close:
            s = float(smooth_step((t - reach) / (close - reach)))
            return self.T_obj0 @ self.T_object_wrist, (1 - s) * self.q_relaxed + s * self.q_grasp, False
        return self.object_at(min(t, manip)) @ self.T_object_wrist, self.q_grasp.copy(), True
