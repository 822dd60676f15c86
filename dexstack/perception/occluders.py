"""The robot's own links as capsules, for the object pose tracker (no ROS).

Two uses, both from the robot's joint state at the image's time:

- a **self-filter**: depth points on or near a capsule are the robot, not the object (:meth:`Occluders.clearance_m`);
- a **physical check** on an object pose: a rigid object cannot be inside the hand. :meth:`Occluders.overlap_m`
  is how deep the capsules reach into the object at a pose. Under a closing hand the camera sees only slivers of the
  object between the fingers, and an ICP fit seeded there can settle a few millimetres into the fingers, turned;
  the pose the hand actually holds overlaps the capsules only by their padding (they are a little fatter than the
  links). :meth:`Occluders.push_out` moves a predicted pose by the least translation that takes the object out of
  the hand.

Capsule ``k`` is the segment ``starts[k] -> ends[k]`` swept by a ball of radius ``radii_m[k]``. Overlap is measured
on :data:`AXIS_SAMPLES` points along each axis: a point ``p`` with radius ``r`` overlaps the object by
``r - sdf(p)`` where positive (``sdf``: :func:`dexstack.perception.object_sdf.signed_distance`, object frame). The
nearest axis point of a capsule to a flat face may fall between samples; with 7 samples on a finger link (<= 5 cm)
the missed depth is < 0.1 mm for faces not parallel to the axis, and exact for faces parallel to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.perception.geometry import invert_transform
from dexstack.perception.object_sdf import signed_distance

AXIS_SAMPLES = 7  # points along each capsule axis for the overlap (see the module doc)
MAX_STEP_M = 0.002  # push_out's trust region per iteration
NEAR_M = 0.05  # capsules whose axis is farther than the object's radius + this from its origin cannot touch it


@dataclass(frozen=True)
class Occluders:
    """Known occluders (the robot's links) as capsules: segment ends (K, 3) and radii (K,), metres, in one frame
    (the base frame where :meth:`~dexstack.perception.object_pose.ObjectPoseEstimator.estimate` takes them)."""

    starts: np.ndarray
    ends: np.ndarray
    radii_m: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.radii_m)
        if np.shape(self.starts) != (k, 3) or np.shape(self.ends) != (k, 3):
            raise ValueError("Occluders: starts and ends must be (K, 3) for K radii")
        if not (np.isfinite(self.starts).all() and np.isfinite(self.ends).all()
                and np.isfinite(self.radii_m).all()):
            raise ValueError("Occluders: non-finite geometry")

    def transformed(self, T: np.ndarray) -> Occluders:
        """The same capsules in another frame (``T`` maps this frame's coordinates into it)."""
        R, t = T[:3, :3], T[:3, 3]
        return Occluders(self.starts @ R.T + t, self.ends @ R.T + t, self.radii_m)

    def clearance_m(self, points: np.ndarray) -> np.ndarray:
        """(N,) distance of each point (same frame as the capsules) to the nearest capsule surface (< 0: inside)."""
        out = np.full(len(points), np.inf)
        if len(self.radii_m) == 0 or len(points) == 0:
            return out
        lo, hi = points.min(axis=0), points.max(axis=0)
        for a, b, r in zip(self.starts, self.ends, self.radii_m):
            # capsules clear of the points' bounding box by more than the nearest distance found cannot matter
            if np.any(np.minimum(a, b) - r > hi + 0.05) or np.any(np.maximum(a, b) + r < lo - 0.05):
                continue
            ab = b - a
            rel = points - a
            s = np.clip(rel @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
            d = rel - s[:, None] * ab
            np.minimum(out, np.sqrt(np.einsum("ij,ij->i", d, d)) - r, out=out)
        return out

    def _axis_points(self, centre: np.ndarray, reach_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis sample points (M, 3) and their radii (M,) of the capsules that can reach within ``reach_m`` of
        ``centre`` (same frame)."""
        if len(self.radii_m) == 0:
            return np.zeros((0, 3)), np.zeros(0)
        s = np.linspace(0.0, 1.0, AXIS_SAMPLES)
        pts = self.starts[:, None] + s[None, :, None] * (self.ends - self.starts)[:, None]  # (K, S, 3)
        radii = np.repeat(self.radii_m, AXIS_SAMPLES)
        pts = pts.reshape(-1, 3)
        near = np.linalg.norm(pts - centre, axis=1) <= reach_m + radii
        return pts[near], radii[near]

    def overlap_m(self, model, T_frame_object: np.ndarray) -> float:
        """How deep (m) the capsules reach into ``model`` posed at ``T_frame_object`` (capsules' frame); 0 when
        they are clear of it."""
        T = np.asarray(T_frame_object, dtype=float)
        pts, radii = self._axis_points(T[:3, 3], model.radius_m + NEAR_M)
        if len(pts) == 0:
            return 0.0
        T_object_frame = invert_transform(T)
        d, _ = signed_distance(model, pts @ T_object_frame[:3, :3].T + T_object_frame[:3, 3])
        return float(max(0.0, np.max(radii - d)))

    def push_out(self, model, T_frame_object: np.ndarray, allowed_m: float = 0.0, iterations: int = 20) -> np.ndarray:
        """``T_frame_object`` moved by the least translation at which no capsule reaches more than ``allowed_m``
        into the object; its rotation is kept (a few capsule overlaps say little about it, and letting the
        push-out turn the pose made kept rotations worse: 27 -> 37 deg median on one demo's kept frames).

        Gauss-Newton on the translation ``dt``, minimising ``|dt / w|^2 + sum_i (min(0, g_i) / s)^2`` with
        ``g_i = sdf_i - r_i + allowed_m`` the gap of axis point ``i``, ``w`` = 1 cm and ``s`` = 0.2 mm (a near-hard
        constraint, so the solution is close to the smallest translation that clears the hand). With ``n`` the
        object-frame gradient of the SDF at the point, moving the object by ``dt`` changes the gap by
        ``-(R n) . dt``. Points clear of the object contribute nothing, so a pose already out of the hand is
        returned unchanged."""
        T = np.asarray(T_frame_object, dtype=float).copy()
        pts, radii = self._axis_points(T[:3, 3], model.radius_m + NEAR_M)
        if len(pts) == 0:
            return T
        t0 = T[:3, 3].copy()
        w_m, s_m = 0.01, 2e-4
        R_frame_object = T[:3, :3]
        for _ in range(iterations):
            d, n_obj = signed_distance(model, (pts - T[:3, 3]) @ R_frame_object)
            gap = d - radii + allowed_m
            active = gap < 0.0
            if not active.any():
                break
            J = -n_obj[active] @ R_frame_object.T  # d gap / d dt
            # normal equations of the prior on dt + the active gaps, linearised at the current translation
            dt = T[:3, 3] - t0
            A = np.eye(3) / w_m ** 2 + J.T @ J / s_m ** 2
            b = -dt / w_m ** 2 - J.T @ gap[active] / s_m ** 2
            step = np.linalg.solve(A, b)
            # a trust region: the gaps are linear only near the current pose (a capsule leaving one face may enter
            # another), and undamped steps against a near-hard constraint overshoot
            step /= max(1.0, np.linalg.norm(step) / MAX_STEP_M)
            T[:3, 3] += step
            if np.linalg.norm(step) < 1e-5:
                break
        return T
