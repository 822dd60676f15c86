"""Which of an object's equivalent frames a human grasp is given in.

A symmetric object (a cube, a body of revolution) fits equally well in several frames, and the object pose core
returns any of them. A grasp measured by the camera does not care: the human hand's keypoints are measured in the
base frame and re-expressed in whatever frame was fitted. A grasp *given in the object frame* (a library grasp,
``config/grasps/``) does: placed in another of the equivalent frames it lands on another side of the object, which
the arm may not reach (bench/grasp.py with the object pose from perception: 5 of 6 kinematic trials lost to
perception were that, with < 0.6 mm position error).

:func:`hand_consistent_frame` turns the fitted frame by the rotation about the object's centre that best maps the
library grasp onto the hand as seen (Kabsch, ``scipy.spatial.transform.Rotation.align_vectors``), and keeps the
turn only when it is a symmetry of the shape (the turned surface lies on the fitted one within
``max_surface_m``) and more than ``min_turn_deg``: the hand chooses among equivalent frames and never corrects the
fit itself (its position error and any rotation that changes the geometry stay).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from dexstack.transforms import (
    invert_transform,
    pose_to_transform,
    rotation_angle_rad,
    transform_points,
    transform_to_pose,
)


@dataclass(frozen=True)
class FrameChoice:
    T_base_object: np.ndarray  # the fitted pose, turned by ``turned_deg`` about the object's centre, or as fitted
    turned_deg: float  # 0: kept as fitted
    surface_mm: float  # mean |signed distance| of the turned model's surface points to the fitted model's
    hand_rms_mm: float  # rms distance of the seen hand's keypoints to the library grasp's, in the chosen frame


def _about_centre(R: np.ndarray, centre: np.ndarray) -> np.ndarray:
    C = np.eye(4)
    C[:3, :3], C[:3, 3] = R, centre - R @ centre
    return C


def _surface_mm(model, C: np.ndarray, surface: np.ndarray) -> float:
    """Mean |signed distance| (mm) of the model's surface points moved by ``C`` (object frame) to its surface."""
    distance, _ = model.signed_distance(transform_points(C, surface))
    return float(1e3 * np.mean(np.abs(distance)))


def turned_pose(pose_xyzw: np.ndarray, C: np.ndarray) -> np.ndarray:
    """An object pose (xyz, quaternion xyzw) re-expressed in the frame the turn ``C`` (object frame) gives it: how
    a tracked pose is read in the frame a grasp was made in (the grasp policy, the benchmark's feed)."""
    pose_xyzw = np.asarray(pose_xyzw, dtype=float)
    xyz, quat = transform_to_pose(pose_to_transform(pose_xyzw[:3], pose_xyzw[3:]) @ C)
    return np.concatenate([xyz, quat])


def symmetric_turn(model, T_base_object: np.ndarray, T_base_object_wanted: np.ndarray,
                   max_surface_m: float = 0.002) -> np.ndarray | None:
    """The turn ``C`` (object frame, about the shape's centre) with ``T_base_object @ C`` oriented as
    ``T_base_object_wanted``, when that turn is a symmetry of the shape (the same object seen in another of its
    equivalent frames: two fits of one can); None when it changes the geometry (the object really turned)."""
    surface, _ = model.surface_points(0.004)
    R = np.asarray(T_base_object, dtype=float)[:3, :3].T @ np.asarray(T_base_object_wanted, dtype=float)[:3, :3]
    C = _about_centre(R, surface.mean(axis=0))
    return C if _surface_mm(model, C, surface) <= 1e3 * max_surface_m else None


def hand_consistent_frame(model, T_base_object_fit: np.ndarray, keypoints_base_m: np.ndarray,
                          keypoints_object_m: np.ndarray, max_surface_m: float = 0.002,
                          min_turn_deg: float = 5.0) -> FrameChoice:
    """The fitted pose ``T_base_object_fit`` in the equivalent frame in which the hand seen at
    ``keypoints_base_m`` (K, 3) holds the object as the library grasp ``keypoints_object_m`` (K, 3) does."""
    T_fit = np.asarray(T_base_object_fit, dtype=float)
    lib = np.asarray(keypoints_object_m, dtype=float)
    seen = transform_points(invert_transform(T_fit), np.asarray(keypoints_base_m, dtype=float))
    surface, _ = model.surface_points(0.004)
    centre = surface.mean(axis=0)  # a symmetry of the shape fixes its centroid

    def rms_mm(T: np.ndarray) -> float:
        in_frame = transform_points(invert_transform(T), np.asarray(keypoints_base_m, dtype=float))
        return float(1e3 * np.sqrt(np.mean(np.sum((in_frame - lib) ** 2, axis=1))))

    # (seen - c) ~= R (lib - c): turning the fitted frame by R about c expresses the hand as the library grasp
    rotation, _ = Rotation.align_vectors(seen - centre, lib - centre)
    R = rotation.as_matrix()
    C = _about_centre(R, centre)
    turned = T_fit @ C
    surface_mm = _surface_mm(model, C, surface)
    turn_deg = float(np.degrees(rotation_angle_rad(R)))
    if turn_deg <= min_turn_deg or surface_mm > 1e3 * max_surface_m:
        return FrameChoice(T_fit, 0.0, surface_mm, rms_mm(T_fit))
    return FrameChoice(turned, turn_deg, surface_mm, rms_mm(turned))
