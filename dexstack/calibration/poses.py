"""Calibration poses: arm configurations that keep the board in view, stay in the workspace box and vary the
rotation axes. No ROS.

Candidates are random joint offsets around a start configuration; each is kept only if, with the nominal camera and
board poses, every board corner projects inside the image (with a margin), the board faces the camera within
``max_obliquity_deg``, and the palm, fingertips and board corners stay inside the safety workspace box. From the
feasible ones a greedy pass picks poses that maximise the smallest rotation difference to those already chosen,
then orders them as a short path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.calibration.handeye import rotation_coverage
from dexstack.calibration.target import CalibrationTarget
from dexstack.camera_model import CameraModel
from dexstack.robot.kinematics import Kinematics


class PoseGenerationError(ValueError):
    """No calibration poses could be found; the message names what failed most."""


@dataclass(frozen=True)
class PoseConfig:
    n_poses: int = 16
    candidates: int = 3000
    joint_spread_rad: tuple[float, ...] = (0.35, 0.3, 0.35, 0.35, 0.8, 0.5, 1.2)  # per arm joint, uniform +-
    max_obliquity_deg: float = 45.0
    min_obliquity_deg: float = 8.0  # fronto-parallel views constrain the focal length poorly
    image_margin_px: float = 25.0
    min_distance_m: float = 0.35
    workspace_min_m: tuple[float, float, float] = (-0.2, -0.7, 0.01)
    workspace_max_m: tuple[float, float, float] = (0.95, 0.7, 1.2)
    workspace_margin_m: float = 0.02
    joint_margin_rad: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class Setup:
    """Nominal geometry used to predict what the camera sees (estimates: a few cm off is fine)."""

    mode: str  # "eye_to_hand" or "eye_in_hand"
    T_parent_camera: np.ndarray  # eye_to_hand: T_base_camera; eye_in_hand: T_link_camera
    T_other_board: np.ndarray  # eye_to_hand: T_link_board; eye_in_hand: T_base_board
    link: str  # the mount link (board's in eye_to_hand, camera's in eye_in_hand)
    camera: CameraModel
    target: CalibrationTarget

    def T_camera_board(self, T_base_link: np.ndarray) -> np.ndarray:
        if self.mode == "eye_to_hand":
            return np.linalg.inv(self.T_parent_camera) @ T_base_link @ self.T_other_board
        return np.linalg.inv(T_base_link @ self.T_parent_camera) @ self.T_other_board


def view_check(setup: Setup, T_base_link: np.ndarray, config: PoseConfig) -> str:
    """'' if the board would be fully and well seen from this link pose, else why not."""
    T = setup.T_camera_board(T_base_link)
    sx, sy = setup.target.size_m
    outline = np.array([[0, 0, 0], [sx, 0, 0], [sx, sy, 0], [0, sy, 0], [sx / 2, sy / 2, 0]], float)
    p = outline @ T[:3, :3].T + T[:3, 3]
    if p[:, 2].min() < config.min_distance_m:
        return "board too close or behind the camera"
    uv = setup.camera.project(p)
    m = config.image_margin_px
    if uv.min() < m or uv[:, 0].max() > setup.camera.width - m or uv[:, 1].max() > setup.camera.height - m:
        return "board outside the image"
    ray = p[4] / np.linalg.norm(p[4])
    obliquity = np.degrees(np.arccos(np.clip(T[:3, 2] @ ray, -1.0, 1.0)))  # board z points away from the camera
    if obliquity > config.max_obliquity_deg:
        return "board seen too obliquely (or from behind)"
    if obliquity < config.min_obliquity_deg:
        return "board seen fronto-parallel"
    return ""


def generate_poses(kinematics: Kinematics, setup: Setup, q_start: np.ndarray, config: PoseConfig | None = None
                   ) -> list[np.ndarray]:
    """Full joint vectors (arm varied, hand as in ``q_start``) for the calibration run, starting near q_start."""
    config = config or PoseConfig()
    d = kinematics.description
    n_arm = len(d.arm_joints)
    rng = np.random.default_rng(config.seed)
    limits = d.limit_arrays(d.arm_joints)
    lo, hi = limits["lower"] + config.joint_margin_rad, limits["upper"] - config.joint_margin_rad
    ws_lo = np.asarray(config.workspace_min_m) + config.workspace_margin_m
    ws_hi = np.asarray(config.workspace_max_m) - config.workspace_margin_m
    keypoint_links = [d.profile.hand.palm_link, *d.profile.hand.fingertip_links]
    spread = np.resize(np.asarray(config.joint_spread_rad, float), n_arm)
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float) * [*setup.target.size_m, 0]
    feasible, reasons = [], {}
    for _ in range(config.candidates):
        q = np.asarray(q_start, float).copy()
        q[:n_arm] = np.clip(q[:n_arm] + rng.uniform(-spread, spread), lo, hi)
        poses = kinematics.frame_poses(q, [setup.link, *keypoint_links])
        points = [poses[k][:3, 3] for k in keypoint_links]
        if setup.mode == "eye_to_hand":
            T_bb = poses[setup.link] @ setup.T_other_board
            points += list(corners @ T_bb[:3, :3].T + T_bb[:3, 3])
        points = np.asarray(points)
        if np.any(points < ws_lo) or np.any(points > ws_hi):
            reasons["outside the workspace box"] = reasons.get("outside the workspace box", 0) + 1
            continue
        why = view_check(setup, poses[setup.link], config)
        if why:
            reasons[why] = reasons.get(why, 0) + 1
            continue
        feasible.append((q, poses[setup.link][:3, :3]))
    if len(feasible) < config.n_poses:
        top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        raise PoseGenerationError(
            f"only {len(feasible)} of {config.candidates} candidate poses keep the target in view inside the "
            f"workspace (need {config.n_poses}); most rejected: {top}. Check the target mount and the camera pose "
            "estimate, or move the start pose so the target faces the camera")
    # Greedy max-min rotation diversity, starting from the candidate closest to the start configuration.
    chosen = [int(np.argmin([np.linalg.norm(q[:n_arm] - q_start[:n_arm]) for q, _ in feasible]))]
    while len(chosen) < config.n_poses:
        best, best_score = None, -1.0
        for i, (_, R) in enumerate(feasible):
            if i in chosen:
                continue
            score = min(np.arccos(np.clip((np.trace(feasible[j][1].T @ R) - 1) / 2, -1, 1)) for j in chosen)
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    # Short path: nearest neighbour in joint space from the start.
    order, left, cur = [], list(chosen), np.asarray(q_start, float)[:n_arm]
    while left:
        k = min(left, key=lambda i: np.abs(feasible[i][0][:n_arm] - cur).max())
        order.append(k)
        left.remove(k)
        cur = feasible[k][0][:n_arm]
    return [feasible[i][0] for i in order]


def coverage_of(rotations: list[np.ndarray]) -> np.ndarray:
    """Rotation-axis coverage of the samples so far (see :func:`handeye.rotation_coverage`)."""
    return rotation_coverage(rotations) if len(rotations) > 1 else np.zeros(3)
