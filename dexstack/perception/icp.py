"""Point-to-plane ICP of a known object's surface against a depth point cloud (numpy + scipy cKDTree; no Open3D).

The model (surface points and outward normals in the object frame) is fitted to scene points in the camera frame.
Correspondences: each scene point's nearest model point (a k-d tree of the model built once, queried with the
scene points moved into the object frame). A correspondence counts only if it is closer than the current
distance threshold, the model point faces the camera (convex objects: visible), and the scene normal (from the
organised depth image) agrees with the model normal, which keeps the support surface (table) from pulling on the
object's sides; scene points without a normal (occlusion edges) are not used. Each step solves the linearised
point-to-plane least squares with Huber weights.

Point-to-plane alone cannot see a slide along a direction every visible face contains (a cube showing two faces
slides freely along their common edge). Given the depth image, a free-space term fixes that: visible model points
that project onto pixels whose measured depth (and their neighbours') lies clearly *behind* them (the object
overhangs where the camera sees through) are pulled, point-to-point, to the nearest matched scene point; and a
light point-to-point term on the matched pairs centres the model on its matched points. Both are weighted well
below point-to-plane (larger weights destabilise the rotation), so they act mostly along the directions the planes
leave free.

Pose perturbation convention (also of the covariance): ``[v, w]`` in the camera frame, translation of the object
origin and a small rotation about the object origin, about the camera's axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from dexstack.perception.geometry import so3_exp


@dataclass(frozen=True)
class IcpConfig:
    max_iterations: int = 30
    max_correspondence_m: float = 0.02  # first iterations
    min_correspondence_m: float = 0.004  # final iterations (the threshold shrinks geometrically)
    max_normal_angle_deg: float = 45.0  # scene vs model normal
    huber_m: float = 0.002
    convergence_m: float = 1e-5  # stop when the update moves the object less than this (and rotates < 1e-4 rad)
    min_correspondences: int = 30
    free_space_m: float = 0.005  # a model point with measured depth this far behind it overhangs (0: no such term)
    free_space_weight: float = 0.1  # of the overhang term relative to point-to-plane (larger is unstable)
    point_to_point_weight: float = 0.05  # of a point-to-point term on the matched points (0: point-to-plane only)
    max_variance: float = 1.0  # prior variance (m^2, rad^2) of directions the data leave free (no depth image)


@dataclass(frozen=True)
class IcpResult:
    T_camera_object: np.ndarray  # 4x4
    n_correspondences: int
    rmse_m: float  # point-to-plane residual RMS of the final correspondences
    # 6x6, (x, y, z, rx, ry, rz) in the camera frame about the object origin (m^2, rad^2): the point-to-plane
    # information plus a prior bounding each direction by the free-space margin (or max_variance without depth)
    covariance: np.ndarray
    iterations: int
    converged: bool


class PointToPlaneIcp:
    """Fits one object model; reuse across frames (the k-d tree is built once)."""

    def __init__(self, model_points: np.ndarray, model_normals: np.ndarray, config: IcpConfig | None = None):
        self.points = np.asarray(model_points, dtype=float)
        self.normals = np.asarray(model_normals, dtype=float)
        self.config = config or IcpConfig()
        self.tree = cKDTree(self.points)
        self.radius_m = float(np.max(np.linalg.norm(self.points, axis=1)))

    def fit(self, scene_points: np.ndarray, scene_normals: np.ndarray | None, T_init: np.ndarray,
            max_iterations: int | None = None, depth_m: np.ndarray | None = None, camera=None
            ) -> IcpResult | None:
        """Refine ``T_init`` (T_camera_object) on (N, 3) scene points (camera frame). With the depth image
        (metres, NaN = hole) and its :class:`~dexstack.camera_model.CameraModel`, the free-space term is
        added. None if too few points correspond at any step."""
        c = self.config
        iters = c.max_iterations if max_iterations is None else max_iterations
        R, t = T_init[:3, :3].copy(), T_init[:3, 3].copy()
        scene = np.asarray(scene_points, dtype=float)
        s_normals = None if scene_normals is None else np.asarray(scene_normals, dtype=float)
        cos_max = np.cos(np.radians(c.max_normal_angle_deg))
        decay = (c.min_correspondence_m / c.max_correspondence_m) ** (1.0 / max(iters // 2, 1))
        threshold = c.max_correspondence_m
        converged = False
        near_depth = None
        if depth_m is not None and camera is not None and c.free_space_m > 0:
            # Nearest measured depth in each 3x3 neighbourhood (holes count as near: unknown is not free), so a
            # point on the true silhouette that rounds onto a background pixel does not count as overhanging.
            near_depth = cv2.erode(np.nan_to_num(depth_m, nan=0.0).astype(np.float32), np.ones((3, 3), np.uint8))
        for it in range(1, iters + 1):  # noqa: B007  (the count is reported after the loop)
            sel = self._correspondences(scene, s_normals, R, t, threshold, cos_max)
            if sel is None:
                return None
            p_s, m_c, n_c = sel  # scene points, model points and normals, camera frame
            r = np.einsum("ij,ij->i", n_c, m_c - p_s)  # signed distance along the model normal
            J = np.hstack((n_c, np.cross(m_c - t, n_c)))
            w = np.where(np.abs(r) <= c.huber_m, 1.0, c.huber_m / np.maximum(np.abs(r), 1e-12))
            H = J.T @ (J * w[:, None])
            g = J.T @ (w * r)
            if c.point_to_point_weight > 0:  # centres the model on the matched points along free directions
                H_p, g_p = _point_to_point(m_c - t, m_c - p_s)
                H, g = H + c.point_to_point_weight * H_p, g + c.point_to_point_weight * g_p
            if near_depth is not None:
                H_f, g_f = self._free_space_terms(R, t, p_s, near_depth, camera)
                H, g = H + c.free_space_weight * H_f, g + c.free_space_weight * g_f
            try:
                delta = -np.linalg.solve(H + 1e-9 * np.eye(6), g)
            except np.linalg.LinAlgError:
                return None
            v, omega = delta[:3], delta[3:]
            R = so3_exp(omega) @ R
            t = t + v
            threshold = max(threshold * decay, c.min_correspondence_m)
            if np.linalg.norm(v) < c.convergence_m and np.linalg.norm(omega) < 1e-4 \
                    and threshold <= c.min_correspondence_m:
                converged = True
                break
        sel = self._correspondences(scene, s_normals, R, t, threshold, cos_max)
        if sel is None:
            return None
        p_s, m_c, n_c = sel
        r = np.einsum("ij,ij->i", n_c, m_c - p_s)
        J = np.hstack((n_c, np.cross(m_c - t, n_c)))
        rmse = float(np.sqrt(np.mean(r ** 2)))
        dof = max(len(r) - 6, 1)
        sigma2 = max(float(r @ r) / dof, 1e-8)  # floor: 0.1 mm noise
        if near_depth is not None:  # the silhouette bounds every slide to the free-space margin (+ a pixel or so)
            std_t = c.free_space_m + 2.0 * float(np.median(scene[:, 2])) / camera.fx
            prior = np.array([std_t] * 3 + [std_t / self.radius_m] * 3) ** -2.0
        else:
            prior = np.full(6, 1.0 / c.max_variance)
        cov = _covariance(J.T @ J, sigma2, prior)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t
        return IcpResult(T_camera_object=T, n_correspondences=len(r), rmse_m=rmse, covariance=cov,
                         iterations=it, converged=converged)

    def _free_space_terms(self, R, t, matched_scene, near_depth, camera) -> tuple[np.ndarray, np.ndarray]:
        """Normal equations of the overhang term: point-to-point from overhanging model points to the nearest
        matched scene point."""
        m = self.points @ R.T + t
        n = self.normals @ R.T
        m = m[(np.einsum("ij,ij->i", n, m) < 0) & (m[:, 2] > 1e-3)]
        uv = np.rint(camera.project(m)).astype(int) if len(m) else np.zeros((0, 2), int)
        h, w = near_depth.shape
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        m, uv = m[inside], uv[inside]
        with np.errstate(invalid="ignore"):
            over = near_depth[uv[:, 1], uv[:, 0]] > m[:, 2] + self.config.free_space_m
        m = m[over]
        if len(m) == 0 or len(matched_scene) == 0:
            return np.zeros((6, 6)), np.zeros(6)
        _, idx = cKDTree(matched_scene).query(m, k=1)
        return _point_to_point(m - t, m - matched_scene[idx])

    def _correspondences(self, scene, s_normals, R, t, threshold, cos_max):
        local = (scene - t) @ R  # scene points in the object frame
        dist, idx = self.tree.query(local, k=1, distance_upper_bound=threshold)
        ok = np.isfinite(dist)
        if ok.sum() < self.config.min_correspondences:
            return None
        idx_ok = idx[ok]
        m_c = self.points[idx_ok] @ R.T + t
        n_c = self.normals[idx_ok] @ R.T
        keep = np.einsum("ij,ij->i", n_c, m_c) < 0.0  # model point faces the camera
        if s_normals is not None:
            with np.errstate(invalid="ignore"):  # points without a normal (NaN: edges) never agree
                keep &= np.einsum("ij,ij->i", n_c, s_normals[ok]) >= cos_max
        if keep.sum() < self.config.min_correspondences:
            return None
        return scene[ok][keep], m_c[keep], n_c[keep]


def _skew(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _covariance(H: np.ndarray, sigma2: float, prior_information: np.ndarray) -> np.ndarray:
    """(H / sigma^2 + diag(prior))^-1: the point-to-plane information combined with a diagonal prior, so
    directions the planes leave free get the prior's variance; symmetric positive definite."""
    info = 0.5 * (H + H.T) / sigma2 + np.diag(prior_information)
    cov = np.linalg.inv(info)
    return 0.5 * (cov + cov.T)


def _point_to_point(a: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations (sum J^T J, sum J^T e) of point-to-point residuals ``e`` (K, 3) of model points at ``a``
    (K, 3) from the object origin, camera frame: J_k = [I, -[a_k]x] for d(m_k)/d[v, w]."""
    H = np.zeros((6, 6))
    H[:3, :3] = len(a) * np.eye(3)
    sum_a = a.sum(axis=0)
    H[:3, 3:] = -_skew(sum_a)
    H[3:, :3] = _skew(sum_a)
    H[3:, 3:] = np.eye(3) * np.einsum("ki,ki->", a, a) - np.einsum("ki,kj->ij", a, a)
    g = np.concatenate((e.sum(axis=0), np.cross(a, e).sum(axis=0)))
    return H, g
