"""Anchoring a hand-object reference to where the object actually is when a policy starts.

A reference says where the object starts (``object_pose[0]``); on a robot (or a sim cell that put the cube
elsewhere) it is somewhere else. Within limits the reference is re-expressed from the perceived start pose: the
object trajectory is translated by the horizontal offset ``d = p_perceived - p_reference(0)`` (x, y; the object
rests on the table, so a height difference is perception error or a wrong object, and is only checked), and the
robot part follows: each sample's palm pose ``T_base_palm(q_k)`` is translated by ``w_k d`` and solved back to arm
joints by damped least squares warm-started on the previous sample (hand joints unchanged). ``w`` ramps smoothly
from 0 at t = 0 (the robot starts where it is) to 1 by the time the palm comes within ``near_m`` of the object,
so the approach bends towards the new position and all contact happens relative to the object as in the original.
Orientation is not re-anchored (a cube's yaw is ambiguous by its symmetry); beyond the limits the policy refuses
with the reason rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dexstack.policies.errors import PolicyError
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.robot.description import RobotDescription


@dataclass(frozen=True)
class AnchorLimits:
    max_shift_xy_m: float = 0.06  # farther than this from the reference's start: refused
    max_shift_z_m: float = 0.02  # height difference: refused beyond (not on the table, or another object)
    min_shift_m: float = 0.005  # below this the reference is used as is (perception noise)
    near_m: float = 0.15  # the shift is fully applied once the palm is this close to the object's start
    max_ik_error_m: float = 0.005  # a shifted palm pose the arm cannot reach this well: refused

    def __post_init__(self) -> None:
        for name in ("max_shift_xy_m", "max_shift_z_m", "near_m", "max_ik_error_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AnchorLimits.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.min_shift_m < self.max_shift_xy_m:
            raise ValueError("AnchorLimits.min_shift_m must be in [0, max_shift_xy_m)")


@dataclass(frozen=True)
class Anchoring:
    reference: ReferenceTrajectory  # the anchored reference (the original when the shift is below min_shift_m)
    shift_m: np.ndarray  # (3,) applied translation (z = 0)
    measured_offset_m: np.ndarray  # (3,) perceived start minus the reference's start


def _smooth(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


def check_offset(reference: ReferenceTrajectory, object_pose: np.ndarray, limits: AnchorLimits) -> np.ndarray:
    """The perceived start minus the reference's start (m); PolicyError with the reason beyond the limits."""
    if reference.object_pose is None:
        raise PolicyError(f"reference '{reference.name}' has no object trajectory to anchor")
    pose = np.asarray(object_pose, dtype=float)
    if pose.shape != (7,) or not np.all(np.isfinite(pose)):
        raise PolicyError(f"cannot anchor reference '{reference.name}': invalid object pose {pose.tolist()}")
    start = reference.object_pose_at(0.0)
    offset = pose[:3] - start[:3]
    xy = float(np.linalg.norm(offset[:2]))
    where = (f"the object is at ({pose[0]:.3f}, {pose[1]:.3f}, {pose[2]:.3f}) m, reference '{reference.name}' starts "
             f"it at ({start[0]:.3f}, {start[1]:.3f}, {start[2]:.3f}) m")
    if xy > limits.max_shift_xy_m:
        raise PolicyError(f"refusing to anchor: {where}, {100 * xy:.1f} cm apart (limit "
                          f"{100 * limits.max_shift_xy_m:.1f} cm); place the object nearer the reference's start")
    if abs(offset[2]) > limits.max_shift_z_m:
        raise PolicyError(f"refusing to anchor: {where}, {100 * offset[2]:+.1f} cm in height (limit "
                          f"{100 * limits.max_shift_z_m:.1f} cm): not resting on the table, or another object")
    return offset


def anchor_reference(reference: ReferenceTrajectory, object_pose: np.ndarray, description: RobotDescription,
                     limits: AnchorLimits | None = None) -> Anchoring:
    """``reference`` re-expressed from the perceived start ``object_pose`` (xyz + quat xyzw, base frame)."""
    from dexstack.policies.tracking.references import PalmIK  # noqa: PLC0415 (pinocchio only when anchoring)

    limits = limits or AnchorLimits()
    offset = check_offset(reference, object_pose, limits)
    shift = np.array([offset[0], offset[1], 0.0])
    if np.linalg.norm(shift) < limits.min_shift_m:
        return Anchoring(reference, np.zeros(3), offset)
    ik = PalmIK(description)
    n_arm = ik.n_arm
    start = reference.object_pose_at(0.0)[:3]
    palm = np.array([ik.kin.frame_pose(q, ik.palm)[:3, 3] for q in reference.q_rad])
    near = np.flatnonzero(np.linalg.norm(palm - start, axis=1) <= limits.near_m)
    t_near = float(reference.times_s[near[0]]) if near.size else float(reference.times_s[-1])
    w = np.ones(len(reference.times_s)) if t_near <= 0 else _smooth(reference.times_s / t_near)
    q_new = reference.q_rad.copy()
    correction = np.zeros(n_arm)  # warm start: the previous sample's joint correction
    worst = 0.0
    for k, q_ref in enumerate(reference.q_rad):
        if w[k] <= 0.0:
            continue
        T = ik.kin.frame_pose(q_ref, ik.palm)
        T[:3, 3] += w[k] * shift
        q = q_ref.copy()
        q[:n_arm] = np.clip(q_ref[:n_arm] + correction, ik.lower, ik.upper)
        err = _refine(ik, q, T, n_arm)
        worst = max(worst, err)
        correction = q[:n_arm] - q_ref[:n_arm]
        q_new[k] = q
    if worst > limits.max_ik_error_m:
        raise PolicyError(f"refusing to anchor reference '{reference.name}' {100 * np.linalg.norm(shift):.1f} cm "
                          f"away: the arm cannot follow it there (palm error {1000 * worst:.1f} mm)")
    object_pose_new = reference.object_pose.copy()
    object_pose_new[:, :3] += shift
    anchored = replace(reference, q_rad=q_new, object_pose=object_pose_new)
    return Anchoring(anchored, shift, offset)


def _refine(ik, q: np.ndarray, T_target: np.ndarray, n_arm: int, iterations: int = 4) -> float:
    """A few damped Gauss-Newton steps on the palm pose (position and orientation), in place; the position error."""
    import pinocchio as pin  # noqa: PLC0415

    for _ in range(iterations):
        T = ik.kin.frame_pose(q, ik.palm)
        e = np.concatenate([T_target[:3, 3] - T[:3, 3], pin.log3(T_target[:3, :3] @ T[:3, :3].T)])
        if np.linalg.norm(e[:3]) < 2e-4 and np.linalg.norm(e[3:]) < 2e-3:
            break
        J = ik.kin.frame_jacobian(q, ik.palm)[:, :n_arm]
        q[:n_arm] = np.clip(q[:n_arm] + np.linalg.solve(J.T @ J + 1e-4 * np.eye(n_arm), J.T @ e), ik.lower, ik.upper)
    return float(np.linalg.norm(T_target[:3, 3] - ik.kin.frame_pose(q, ik.palm)[:3, 3]))
