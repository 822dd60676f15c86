"""6-D pose of a known object from RGB-D, in the robot base frame. No ROS.

Two methods (:attr:`ObjectPoseConfig.method`):

``fiducial``
    AprilTag 36h11 tags on the object (``T_object_tag`` per tag in the object's config). Each tag gives two pose
    candidates (IPPE_SQUARE); the flip ambiguity is settled by the depth image (the candidate whose face normal
    agrees with the plane fitted to the depth inside the tag) or, without depth, by reprojection error. Several
    tags are refined jointly (one PnP over all corners, which is unambiguous across faces). With
    ``fiducial_depth_refine`` the tags' measured planes then correct the pose (normals align, the tag centres
    move onto the measured surface along their viewing rays): small tags give poor PnP depth.
``model``
    The object's surface (shape or mesh) against the depth point cloud by point-to-plane ICP
    (:mod:`dexstack.perception.icp`), initialised from the previous pose (tracking), else the tags, else a coarse
    search (the support plane is removed, blobs above it are tried at several orientations).

Every pose is checked against the depth image (:func:`depth_fitness`): where the object's visible surface is
predicted, the measured depth must agree (occlusions in front of it are neutral, free space behind it is not).
A pose that fails the check, or no pose, is reported as lost with a reason; the last pose is never repeated.

**Through the robot's own occlusion** (the hand grasping or covering the object), the caller passes the robot's
capsule skeleton at the image's time (:class:`Occluders`, from the joint state): depth points on or near it are
removed before the fit (a robot self-filter), else ICP, even seeded at the true pose, slides onto the fingers
(measured: 20-37 mm, 35-50 deg off through the lift reference's grasp). With occluders, a *tracked* fit (seeded
by the previous pose or a prediction) may then be accepted with less of the object seen than ``min_coverage``, if
the part not hidden behind something is confirmed (``min_unoccluded_coverage``) by at least ``min_agree_points``
points; its ICP covariance says which directions the few visible faces leave loose. Acquisition (tags, coarse
search) keeps the strict check.

The same capsules check every fit physically: a rigid object cannot be inside the hand, so a fit the capsules reach
deeper into than ``max_robot_overlap_m`` is refused (:meth:`~dexstack.perception.occluders.Occluders.overlap_m`;
under the closing fingers ICP settles a few mm into them, turned, and the pose keeper would carry that error on).

Frames: camera = the color optical frame; base = the calibration's parent frame; object = the object config's frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from dexstack.camera_model import CameraModel
from dexstack.perception.geometry import (
    depth_to_meters,
    fit_plane,
    invert_transform,
    organized_normals,
    organized_points,
    rotate_covariance,
    rotation_angle_rad,
    so3_exp,
    transform_points,
)
from dexstack.perception.icp import IcpConfig, PointToPlaneIcp
from dexstack.perception.objects import ObjectModel
from dexstack.perception.occluders import Occluders
from dexstack.perception.tags import TagDetection, TagDetector, TagDetectorConfig, tag_pose_candidates
from dexstack.transforms import rpy_to_matrix

METHODS = ("fiducial", "model")
LOST_KINDS = ("no tags configured", "no tag visible", "depth check failed", "no fit")


@dataclass(frozen=True)
class ObjectPoseConfig:
    method: str = "model"  # "fiducial" | "model"
    tags: TagDetectorConfig = field(default_factory=TagDetectorConfig)
    fiducial_depth_refine: bool = True
    icp: IcpConfig = field(default_factory=IcpConfig)
    model_spacing_m: float = 0.003  # surface sampling of the object for ICP
    search_margin_m: float = 0.03  # scene points within the object's radius + this of the initial guess are used
    max_scene_points: int = 2000  # subsampled beyond this (deterministically)
    max_track_gap_s: float = 0.5  # the previous pose seeds ICP if it is younger than this
    use_tags_for_init: bool = True  # model method: seed from the tags when not tracking
    coarse_search: bool = True  # model method: search the depth image when neither tracking nor tags give a seed
    prior_gate_m: float = 0.02  # with a predicted pose (occlusion), fits farther than this from it are refused ...
    prior_gate_rad: float = 0.35  # ... or turned more than this (modulo the object's symmetries), or than
    prior_gate_sigmas: float = 3.0  # ... this many of the prediction's rotation std when that is wider (0: off)
    min_fitness: float = 0.6  # depth agreement over the visible surface, see depth_fitness
    min_coverage: float = 0.2  # fraction of the predicted visible surface the depth confirms
    # A tracked fit under occlusion: enough of the surface that is not hidden (measured depth in front of it)
    # confirmed, by at least this many check points (4 mm spacing: 40 ~ 6 cm^2 of the surface; 25 let a rotated
    # cube drift 2 cm over a few frames showing 35 points).
    min_unoccluded_coverage: float = 0.5
    min_agree_points: int = 40
    occluder_margin_m: float = 0.005  # depth points within an occluder capsule's radius + this are the robot
    # A fit the robot's capsules reach into deeper than this is inside the hand, not the object (the held object
    # overlaps them only by their padding, ~1 mm; fits that slid into the closing fingers by 4-10 mm). 0: off.
    max_robot_overlap_m: float = 0.003
    max_rmse_m: float = 0.004  # ICP point-to-plane RMS
    depth_tolerance_m: float = 0.01  # depth check (x3 for fiducial poses without depth refinement)
    min_depth_m: float = 0.1
    max_depth_m: float = 3.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method '{self.method}' is not one of {METHODS}")
        for name in ("min_fitness", "min_coverage", "min_unoccluded_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ObjectPoseConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.prior_gate_sigmas >= 0:
            raise ValueError(f"ObjectPoseConfig.prior_gate_sigmas must be >= 0, got {self.prior_gate_sigmas}")
        if self.min_agree_points < 1 or self.occluder_margin_m < 0 or not self.max_robot_overlap_m >= 0:
            raise ValueError("ObjectPoseConfig: min_agree_points must be >= 1, occluder_margin_m and "
                             "max_robot_overlap_m >= 0")


@dataclass(frozen=True)
class ObjectPoseResult:
    t_s: float  # stamp of the image, seconds
    tracking: bool  # False: lost (see reason); the pose fields are then None
    method: str
    init: str  # model method: "previous" | "tags" | "coarse"; fiducial: "tags"; "" when lost
    T_camera_object: np.ndarray | None
    T_base_object: np.ndarray | None
    covariance_base: np.ndarray | None  # 6x6 (x, y, z, rx, ry, rz) in the base frame about the object origin
    fitness: float  # depth agreement over the visible surface in [0, 1] (see depth_fitness)
    coverage: float  # fraction of the predicted visible surface confirmed by depth
    rmse_m: float  # model: ICP point-to-plane RMS; fiducial: NaN
    reprojection_px: float  # fiducial: RMS corner reprojection error; model: NaN
    tags_seen: tuple[int, ...]
    reason: str = ""  # why tracking is lost (detail)
    lost_kind: str = ""  # why tracking is lost, one of LOST_KINDS (for counting)


@dataclass(frozen=True)
class DepthFit:
    fitness: float
    coverage: float
    n_visible: int
    n_agree: int = 0
    n_occluded: int = 0  # visible points with measured depth in front of them (hidden by something)

    @property
    def unoccluded_coverage(self) -> float:
        """Fraction of the predicted visible surface not hidden behind something that the depth confirms."""
        free = self.n_visible - self.n_occluded
        return self.n_agree / free if free > 0 else 0.0


def depth_fitness(T_camera_object: np.ndarray, model_points: np.ndarray, model_normals: np.ndarray,
                  depth_m: np.ndarray, camera: CameraModel, tolerance_m: float = 0.01) -> DepthFit:
    """How well a pose agrees with a depth image (metres, NaN = hole).

    The model's camera-facing surface points are projected into the image. A point agrees if the measured depth
    is within ``tolerance_m`` of its predicted depth; a measured depth in front of it is an occlusion (neutral);
    measured depth behind it in its whole 3x3 neighbourhood means the object is not there (contradiction).
    ``fitness`` = agree / (agree + contradict); ``coverage`` = agree / visible points.
    """
    R, t = T_camera_object[:3, :3], T_camera_object[:3, 3]
    p = model_points @ R.T + t
    n = model_normals @ R.T
    front = (np.einsum("ij,ij->i", n, p) < 0) & (p[:, 2] > 1e-3)
    p = p[front]
    uv = np.rint(camera.project(p)).astype(int) if len(p) else np.zeros((0, 2), int)
    h, w = depth_m.shape
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    if not inside.any():
        return DepthFit(0.0, 0.0, 0)
    z_pred = p[inside, 2]
    z_meas = depth_m[uv[inside, 1], uv[inside, 0]]
    # Free space must be free in the whole 3x3 neighbourhood: a point on the silhouette may round onto the background.
    z_near = near_depth(depth_m)[uv[inside, 1], uv[inside, 0]]
    valid = np.isfinite(z_meas)
    agree = valid & (np.abs(z_meas - z_pred) <= tolerance_m)
    contradict = valid & ~agree & (z_near > z_pred + tolerance_m)
    occluded = valid & (z_meas < z_pred - tolerance_m)
    n_vis = int(inside.sum())
    decided = int(agree.sum() + contradict.sum())
    return DepthFit(fitness=float(agree.sum() / decided) if decided else 0.0,
                    coverage=float(agree.sum() / n_vis), n_visible=n_vis, n_agree=int(agree.sum()),
                    n_occluded=int(occluded.sum()))


def near_depth(depth_m: np.ndarray) -> np.ndarray:
    """Nearest measured depth in each pixel's 3x3 neighbourhood (holes count as 0: unknown is never free space)."""
    return cv2.erode(np.nan_to_num(depth_m, nan=0.0).astype(np.float32), np.ones((3, 3), np.uint8))


class ObjectPoseEstimator:
    """Pose of one object from one camera, frame after frame (it keeps the previous pose to track)."""

    def __init__(self, model: ObjectModel, T_base_camera: np.ndarray, config: ObjectPoseConfig | None = None,
                 depth_scale_m: float = 0.001):
        self.model = model
        self.T_base_camera = np.asarray(T_base_camera, dtype=float)
        self.config = config or ObjectPoseConfig()
        self.depth_scale_m = depth_scale_m
        self.tag_detector = TagDetector(self.config.tags) if model.tags else None
        self.points, self.normals = model.surface_points(self.config.model_spacing_m)
        self._check_points, self._check_normals = model.surface_points(max(self.config.model_spacing_m, 0.004))
        self.icp = PointToPlaneIcp(self.points, self.normals, self.config.icp)
        self._previous: tuple[float, np.ndarray] | None = None  # (t_s, T_camera_object)
        self._prior: np.ndarray | None = None  # T_camera_object predicted for the current frame
        self._prior_gate_rad = self.config.prior_gate_rad  # the rotation gate for the current frame's prediction
        self._occluders: Occluders | None = None  # the robot in the current frame, camera frame
        self._symmetries = model.symmetries()

    def reset(self) -> None:
        self._previous = None

    # ------------------------------------------------------------------ entry point
    def estimate(self, color_rgb8: np.ndarray | None, depth: np.ndarray | None, camera: CameraModel,
                 t_s: float, prior_base_object: np.ndarray | None = None,
                 occluders: Occluders | None = None, prior_std_rad: float = 0.0) -> ObjectPoseResult:
        """Pose in one RGB-D frame (depth: (H, W) in ``depth_scale_m`` units, aligned to color).

        ``prior_base_object``: where the object is predicted to be (e.g. :class:`~dexstack.perception.pose_keeper.
        PoseKeeper` while the hand occludes it): it seeds the model fit, and fits farther than ``prior_gate_m`` /
        ``prior_gate_rad`` from it are refused (under a hand, ICP seeded by anything, and the coarse search, land
        on the fingers); the coarse search is skipped. ``prior_std_rad``: the prediction's rotation uncertainty;
        the rotation gate widens to ``prior_gate_sigmas`` of it (a prediction's rotation goes stale: a held object
        turns in the fingers, is set down turned, and a fixed gate then refuses it for good once it is seen
        again). ``occluders``: the robot's capsules at the image's time (base frame): depth points on them are not
        the object, and a fit they reach into is refused."""
        c = self.config
        self._prior_gate_rad = max(c.prior_gate_rad, c.prior_gate_sigmas * float(prior_std_rad))
        T_camera_base = invert_transform(self.T_base_camera)
        self._prior = None if prior_base_object is None else T_camera_base @ prior_base_object
        self._occluders = None if occluders is None else occluders.transformed(T_camera_base)
        depth_m = None
        if depth is not None:
            depth_m = depth_to_meters(depth, self.depth_scale_m)
            depth_m[(depth_m < c.min_depth_m) | (depth_m > c.max_depth_m)] = np.nan
        if c.method == "fiducial":
            return self._estimate_fiducial(color_rgb8, depth_m, camera, t_s)
        if depth_m is None:
            raise ValueError("the model method needs a depth image")
        return self._estimate_model(color_rgb8, depth_m, camera, t_s)

    def _lost(self, t_s: float, kind: str, reason: str, tags_seen: tuple[int, ...] = (), fitness: float = 0.0,
              coverage: float = 0.0) -> ObjectPoseResult:
        self._previous = None
        return ObjectPoseResult(t_s=t_s, tracking=False, method=self.config.method, init="", T_camera_object=None,
                                T_base_object=None, covariance_base=None, fitness=fitness, coverage=coverage,
                                rmse_m=float("nan"), reprojection_px=float("nan"), tags_seen=tags_seen,
                                reason=reason, lost_kind=kind)

    def _found(self, t_s: float, init: str, T_co: np.ndarray, cov_camera: np.ndarray, fit: DepthFit | None,
               rmse_m: float, reprojection_px: float, tags_seen: tuple[int, ...]) -> ObjectPoseResult:
        self._previous = (t_s, T_co.copy())
        R_bc = self.T_base_camera[:3, :3]
        return ObjectPoseResult(
            t_s=t_s, tracking=True, method=self.config.method, init=init, T_camera_object=T_co,
            T_base_object=self.T_base_camera @ T_co, covariance_base=rotate_covariance(cov_camera, R_bc),
            fitness=fit.fitness if fit else float("nan"), coverage=fit.coverage if fit else float("nan"),
            rmse_m=rmse_m, reprojection_px=reprojection_px, tags_seen=tags_seen)

    def _far_from_prior(self, T_co: np.ndarray) -> str:
        """Why ``T_co`` is not the object predicted for this frame ('' if there is no prediction or it is near)."""
        if self._prior is None:
            return ""
        d = float(np.linalg.norm(T_co[:3, 3] - self._prior[:3, 3]))
        if d > self.config.prior_gate_m:
            return f"{100 * d:.1f} cm from the predicted pose (gate {100 * self.config.prior_gate_m:.1f} cm)"
        R = self._prior[:3, :3].T @ T_co[:3, :3]
        angle = min(rotation_angle_rad(R @ S) for S in self._symmetries)
        if angle > self._prior_gate_rad:
            gate_deg = np.degrees(self._prior_gate_rad)
            return f"turned {np.degrees(angle):.0f} deg from the predicted pose (gate {gate_deg:.0f} deg)"
        return ""

    def robot_overlap_m(self, T_co: np.ndarray) -> float:
        """How deep the current frame's occluders (the robot) reach into the object at camera-frame pose ``T_co``
        (0 without occluders)."""
        return 0.0 if self._occluders is None else self._occluders.overlap_m(self.model, T_co)

    def _check(self, T_co: np.ndarray, depth_m: np.ndarray, camera: CameraModel, tolerance_m: float | None = None,
               tracked: bool = False) -> tuple[DepthFit, str]:
        """The depth check; ``tracked``: the fit was seeded by the previous pose or a prediction, so an occluded
        object passes on the part of it that is not hidden (see the module doc)."""
        c = self.config
        fit = depth_fitness(T_co, self._check_points, self._check_normals, depth_m, camera,
                            tolerance_m or c.depth_tolerance_m)
        if fit.fitness < c.min_fitness:
            return fit, f"depth disagrees with the pose (fitness {fit.fitness:.2f} < {c.min_fitness})"
        if fit.coverage < c.min_coverage:
            if not tracked:
                return fit, f"too little of the object is seen (coverage {fit.coverage:.2f} < {c.min_coverage})"
            if fit.n_agree < c.min_agree_points or fit.unoccluded_coverage < c.min_unoccluded_coverage:
                return fit, (f"too little of the object is seen (coverage {fit.coverage:.2f} < {c.min_coverage}; "
                             f"occluded: {fit.n_agree} points confirm {fit.unoccluded_coverage:.2f} of the "
                             f"unhidden surface, need {c.min_agree_points} and {c.min_unoccluded_coverage})")
        return fit, ""

    # ------------------------------------------------------------------ fiducial
    def _detect_tags(self, color_rgb8: np.ndarray | None) -> list[TagDetection]:
        if self.tag_detector is None or color_rgb8 is None:
            return []
        return [d for d in self.tag_detector.detect(color_rgb8) if self.model.tag(d.id) is not None]

    def _estimate_fiducial(self, color_rgb8, depth_m, camera, t_s) -> ObjectPoseResult:
        if self.tag_detector is None:
            return self._lost(t_s, "no tags configured", f"object '{self.model.name}' has no tags in its config")
        tags = self._detect_tags(color_rgb8)
        seen = tuple(sorted(d.id for d in tags))
        if not tags:
            return self._lost(t_s, "no tag visible", "no tag of the object is visible")
        T_co, reproj_px, cov = self.fiducial_pose(tags, depth_m, camera)
        fit = None
        if depth_m is not None:  # PnP alone is off by several mm in depth for small tags: a looser check
            loose = None if self.config.fiducial_depth_refine else 3.0 * self.config.depth_tolerance_m
            fit, reason = self._check(T_co, depth_m, camera, loose)
            if reason:
                return self._lost(t_s, "depth check failed", reason, seen, fit.fitness, fit.coverage)
        return self._found(t_s, "tags", T_co, cov, fit, float("nan"), reproj_px, seen)

    def fiducial_pose(self, tags: list[TagDetection], depth_m: np.ndarray | None, camera: CameraModel
                      ) -> tuple[np.ndarray, float, np.ndarray]:
        """(T_camera_object, RMS reprojection error in px, 6x6 covariance in the camera frame) from detected tags
        of this object (at least one)."""
        size = self.model.tag_size_m
        corners_tag = self.model.tag_corners_tag()
        planes = {d.id: tag_plane(d.corners_px, depth_m, camera) if depth_m is not None else None for d in tags}
        seeds = []
        for d in tags:
            T_ct = choose_tag_candidate(tag_pose_candidates(d.corners_px, size, camera), planes[d.id])
            seeds.append(T_ct @ invert_transform(self.model.tag(d.id).T_object_tag))
        object_pts = np.concatenate([transform_points(self.model.tag(d.id).T_object_tag, corners_tag) for d in tags])
        image_pts = np.concatenate([d.corners_px for d in tags])
        best = None
        for seed in seeds if len(tags) > 1 else seeds[:1]:
            T = seed
            if len(tags) > 1:  # all corners at once: non-coplanar across faces, so unambiguous
                rvec, _ = cv2.Rodrigues(seed[:3, :3])
                ok, rvec, tvec = cv2.solvePnP(object_pts, image_pts, camera.K, camera.opencv_distortion(), rvec,
                                              seed[:3, 3].copy(), useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
                if ok:
                    T = np.eye(4)
                    T[:3, :3], T[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.ravel()
            err = _reprojection_rms(T, object_pts, image_pts, camera)
            if best is None or err < best[1]:
                best = (T, err)
        T_co, err = best
        cov = _pnp_covariance(T_co, object_pts, camera, max(err, 0.3))
        if self.config.fiducial_depth_refine and depth_m is not None:
            T_co = self._refine_with_planes(T_co, tags, planes)
        return T_co, err, cov

    def _refine_with_planes(self, T_co: np.ndarray, tags: list[TagDetection], planes: dict) -> np.ndarray:
        """Rotate the tags' normals onto the measured planes (about the tag centres), then slide the tag centres
        along their viewing rays onto the planes."""
        used = [(self.model.tag(d.id).T_object_tag, planes[d.id]) for d in tags if planes[d.id] is not None]
        if not used:
            return T_co
        T = T_co.copy()
        predicted = np.array([(T[:3, :3] @ T_ot[:3, :3])[:, 2] for T_ot, _ in used])
        measured = np.array([p[0] for _, p in used])
        if len(used) == 1:
            axis = np.cross(predicted[0], measured[0])
            s, cth = np.linalg.norm(axis), float(predicted[0] @ measured[0])
            R_fix = so3_exp(axis / s * np.arctan2(s, cth)) if s > 1e-9 else np.eye(3)
        else:
            U, _, Vt = np.linalg.svd(measured.T @ predicted)
            R_fix = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
        if rotation_angle_rad(R_fix) > np.radians(20.0):  # not a refinement any more: keep the PnP pose
            return T_co
        # Rotate about the tags' centres (what PnP placed well), not the object origin behind them.
        pivot = np.mean([(T @ T_ot)[:3, 3] for T_ot, _ in used], axis=0)
        T[:3, :3] = R_fix @ T[:3, :3]
        T[:3, 3] = pivot + R_fix @ (T[:3, 3] - pivot)
        shifts = []
        for T_ot, (n, d) in used:
            centre = (T @ T_ot)[:3, 3]
            ray = centre / np.linalg.norm(centre)
            denom = float(n @ ray)
            if abs(denom) > 0.2:  # the plane is not seen edge-on
                shifts.append(ray * (d / denom) - centre)
        if shifts:
            T[:3, 3] += np.mean(shifts, axis=0)
        return T

    # ------------------------------------------------------------------ model (ICP)
    def _estimate_model(self, color_rgb8, depth_m, camera, t_s) -> ObjectPoseResult:
        c = self.config
        tried: list[str] = []
        tags_seen: tuple[int, ...] = ()
        if self._previous is not None and t_s - self._previous[0] <= c.max_track_gap_s:
            result = self._fit_from(self._previous[1], "previous", depth_m, camera, t_s, tags_seen, tried)
            if result is not None:
                return result
        if self._prior is not None:
            result = self._fit_from(self._prior, "prediction", depth_m, camera, t_s, tags_seen, tried)
            if result is not None:
                return result
        if c.use_tags_for_init and self.tag_detector is not None:
            tags = self._detect_tags(color_rgb8)
            tags_seen = tuple(sorted(d.id for d in tags))
            if tags:
                T_tag, _, _ = self.fiducial_pose(tags, depth_m, camera)
                result = self._fit_from(T_tag, "tags", depth_m, camera, t_s, tags_seen, tried)
                if result is not None:
                    return result
            else:
                tried.append("tags: none visible")
        if c.coarse_search and self._prior is None:  # with a prediction, the coarse search finds nothing it accepts
            for T_seed in self._coarse_seeds(depth_m, camera):
                result = self._fit_from(T_seed, "coarse", depth_m, camera, t_s, tags_seen, tried)
                if result is not None:
                    return result
            if not any(t.startswith("coarse") for t in tried):
                tried.append("coarse: no candidate above the support plane")
        return self._lost(t_s, "no fit", "; ".join(tried) or "no initial guess", tags_seen)

    def _scene(self, centre: np.ndarray, depth_m: np.ndarray, camera: CameraModel
               ) -> tuple[np.ndarray, np.ndarray]:
        """Scene points and normals (camera frame) within the search radius of ``centre``."""
        rho = self.model.radius_m + self.config.search_margin_m
        if centre[2] - rho <= self.config.min_depth_m * 0.5:
            return np.zeros((0, 3)), np.zeros((0, 3))
        box = centre + rho * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        uv = camera.project(box)
        h, w = depth_m.shape
        u0, v0 = np.clip(np.floor(uv.min(axis=0)).astype(int) - 1, 0, [w, h])
        u1, v1 = np.clip(np.ceil(uv.max(axis=0)).astype(int) + 2, 0, [w, h])
        if u1 - u0 < 3 or v1 - v0 < 3:
            return np.zeros((0, 3)), np.zeros((0, 3))
        pts = organized_points(depth_m[v0:v1, u0:u1], camera, u0, v0)
        nrm = organized_normals(pts)
        pts, nrm = pts.reshape(-1, 3), nrm.reshape(-1, 3)
        keep = np.isfinite(pts[:, 2]) & (np.linalg.norm(pts - centre, axis=1) <= rho)
        pts, nrm = pts[keep], nrm[keep]
        if self._occluders is not None:  # the robot's own links are not the object
            off_robot = self._occluders.clearance_m(pts) > self.config.occluder_margin_m
            pts, nrm = pts[off_robot], nrm[off_robot]
        if len(pts) > self.config.max_scene_points:
            step = int(np.ceil(len(pts) / self.config.max_scene_points))
            pts, nrm = pts[::step], nrm[::step]
        return pts, nrm

    def _fit_from(self, T_seed, init, depth_m, camera, t_s, tags_seen, tried, max_iterations=None):
        pts, nrm = self._scene(T_seed[:3, 3], depth_m, camera)
        if len(pts) < self.config.icp.min_correspondences:
            tried.append(f"{init}: no depth near the guess")
            return None
        fit_result = self.icp.fit(pts, nrm, T_seed, max_iterations, depth_m=depth_m, camera=camera)
        if fit_result is None:
            tried.append(f"{init}: ICP found too few correspondences")
            return None
        T_co = fit_result.T_camera_object
        far = self._far_from_prior(T_co)  # under the hand, fits (even tag-seeded ones) can land on the fingers
        if far:
            tried.append(f"{init}: {far}")
            return None
        overlap_m = self.robot_overlap_m(T_co) if self.config.max_robot_overlap_m > 0 else 0.0
        if overlap_m > self.config.max_robot_overlap_m > 0:
            tried.append(f"{init}: the hand reaches {1000 * overlap_m:.1f} mm into the fitted object "
                         f"(limit {1000 * self.config.max_robot_overlap_m:.1f} mm)")
            return None
        if fit_result.rmse_m > self.config.max_rmse_m:
            tried.append(f"{init}: ICP residual {1000 * fit_result.rmse_m:.1f} mm > "
                         f"{1000 * self.config.max_rmse_m:.1f} mm")
            return None
        # Less of the object may be seen only where the occluder is known (the robot, filtered out above): without
        # the filter, fits that pass on a small visible part slide onto the fingers (measured: up to 15 mm).
        tracked = init in ("previous", "prediction") and self._occluders is not None
        fit, reason = self._check(T_co, depth_m, camera, tracked=tracked)
        if reason:
            tried.append(f"{init}: {reason}")
            return None
        return self._found(t_s, init, T_co, fit_result.covariance, fit, fit_result.rmse_m, float("nan"), tags_seen)

    def _coarse_seeds(self, depth_m: np.ndarray, camera: CameraModel) -> list[np.ndarray]:
        """Initial guesses from the depth image alone: blobs above the dominant plane, at several orientations,
        best-scoring first (each is scored by a short ICP and the depth check)."""
        plane = _dominant_plane(depth_m, camera)
        if plane is None:
            return []
        n, d = plane
        pts = organized_points(depth_m, camera)
        with np.errstate(invalid="ignore"):
            height = pts @ n - d  # n points to the camera's side of the plane: "up" from the support
        radius = self.model.radius_m
        with np.errstate(invalid="ignore"):
            mask = ((height > 0.005) & (height < 2.0 * radius + 0.02)).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        up = n  # away from the support surface
        candidates = []
        for k in range(1, count):
            if stats[k, cv2.CC_STAT_AREA] < 20:
                continue
            blob = pts[labels == k]
            centroid = blob.mean(axis=0)
            if np.max(np.linalg.norm(blob - centroid, axis=1)) > 2.5 * radius:
                continue  # larger than the object: not it (or not alone)
            view = centroid / np.linalg.norm(centroid)
            candidates.append(centroid + 0.5 * radius * view)
        seeds = []
        for centre in candidates:
            pts_s, nrm_s = self._scene(centre, depth_m, camera)
            if len(pts_s) < self.config.icp.min_correspondences:
                continue
            scored = []
            for R in self._orientation_hypotheses(up):
                T = np.eye(4)
                T[:3, :3], T[:3, 3] = R, centre
                res = self.icp.fit(pts_s, nrm_s, T, max_iterations=10, depth_m=depth_m, camera=camera)
                if res is None:
                    continue
                fit = depth_fitness(res.T_camera_object, self._check_points, self._check_normals, depth_m, camera,
                                    self.config.depth_tolerance_m)
                scored.append((fit.fitness * fit.coverage - 10.0 * res.rmse_m, res.T_camera_object))
            scored.sort(key=lambda s: -s[0])
            seeds.extend(T for _, T in scored[:2])
        return seeds

    def _orientation_hypotheses(self, up: np.ndarray) -> list[np.ndarray]:
        """Rotations (camera frame) with each object axis along ``up`` and 12 yaws, minus duplicates under the
        object's symmetries."""
        z = up / np.linalg.norm(up)
        x = np.cross([0.0, 1.0, 0.0], z)
        x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0.0, 0.0])
        base = np.column_stack((x, np.cross(z, x), z))  # camera <- frame with z up
        axis_up = [np.eye(3), rpy_to_matrix([np.pi / 2, 0, 0]), rpy_to_matrix([0, -np.pi / 2, 0])]
        syms = self.model.symmetries()
        out: list[np.ndarray] = []
        for A in axis_up:  # object z, y, x up
            for yaw in np.radians(np.arange(0.0, 360.0, 30.0)):
                R = base @ rpy_to_matrix([0, 0, yaw]) @ A
                if all(min(rotation_angle_rad(Q.T @ R @ S) for S in syms) > np.radians(10.0) for Q in out):
                    out.append(R)
        return out


def tag_plane(corners_px: np.ndarray, depth_m: np.ndarray, camera: CameraModel
          ) -> tuple[np.ndarray, float] | None:
    """Plane fitted to the depth (metres, NaN = hole) inside a tag's corners: (unit normal toward the camera, offset
    d with n.p = d), or None without enough consistent depth."""
    corners = np.asarray(corners_px, dtype=float)
    centre = corners.mean(axis=0)
    shrunk = centre + 0.7 * (corners - centre)  # stay off the tag's edges (and the object's)
    h, w = depth_m.shape
    u0, v0 = np.floor(shrunk.min(axis=0)).astype(int)
    u1, v1 = np.ceil(shrunk.max(axis=0)).astype(int) + 1
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, w), min(v1, h)
    if u1 - u0 < 3 or v1 - v0 < 3:
        return None
    mask = np.zeros((v1 - v0, u1 - u0), np.uint8)
    cv2.fillConvexPoly(mask, np.rint(shrunk - [u0, v0]).astype(np.int32), 1)
    pts = organized_points(depth_m[v0:v1, u0:u1], camera, u0, v0)[mask.astype(bool)]
    pts = pts[np.isfinite(pts[:, 2])]
    if len(pts) < 12:
        return None
    n, d, _ = fit_plane(pts)
    inliers = np.abs(pts @ n - d) < 0.003
    if inliers.sum() < 12:
        return None
    n, d, rms = fit_plane(pts[inliers])
    if rms > 0.003:
        return None
    if d > 0:  # orient toward the camera: n.p < 0 for points on the plane
        n, d = -n, -d
    return n, d


def choose_tag_candidate(candidates: list[tuple[np.ndarray, float]], plane: tuple[np.ndarray, float] | None
                         ) -> np.ndarray:
    """T_camera_tag among IPPE's candidates (best reprojection first): with a measured plane, the one whose face
    normal (tag z) agrees best with it, else the best reprojection. Settles the single-tag flip ambiguity."""
    if plane is None or len(candidates) < 2:
        return candidates[0][0]
    return max(candidates, key=lambda c: float(c[0][:3, 2] @ plane[0]))[0]


def _reprojection_rms(T: np.ndarray, object_pts: np.ndarray, image_pts: np.ndarray, camera: CameraModel) -> float:
    uv = camera.project(transform_points(T, object_pts))
    return float(np.sqrt(np.mean(np.sum((uv - image_pts) ** 2, axis=1))))


def _pnp_covariance(T: np.ndarray, object_pts: np.ndarray, camera: CameraModel, sigma_px: float) -> np.ndarray:
    """6x6 covariance of a PnP pose from the corner reprojection Jacobian (numerical), with ``sigma_px`` corner
    noise; perturbations [v, w] in the camera frame about the object origin."""
    p0 = transform_points(T, object_pts)
    uv0 = camera.project(p0).ravel()
    eps = 1e-6
    J = np.zeros((len(uv0), 6))
    origin = T[:3, 3]
    for k in range(6):
        delta = np.zeros(6)
        delta[k] = eps
        p = (p0 - origin) @ so3_exp(delta[3:]).T + origin + delta[:3]
        J[:, k] = (camera.project(p).ravel() - uv0) / eps
    try:
        return sigma_px ** 2 * np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return np.full((6, 6), np.inf)


def _dominant_plane(depth_m: np.ndarray, camera: CameraModel, iterations: int = 100, tolerance_m: float = 0.005,
                    stride: int = 4) -> tuple[np.ndarray, float] | None:
    """RANSAC plane with the most support in a subsampled depth image: (normal toward the camera, offset)."""
    pts = organized_points(depth_m[::stride, ::stride], CameraModel(
        camera.width, camera.height, camera.fx / stride, camera.fy / stride, camera.cx / stride,
        camera.cy / stride)).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])]
    if len(pts) < 50:
        return None
    rng = np.random.default_rng(0)
    best, best_count = None, 0
    for _ in range(iterations):
        a, b, c = pts[rng.choice(len(pts), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            continue
        n /= norm
        count = int(np.sum(np.abs(pts @ n - n @ a) < tolerance_m))
        if count > best_count:
            best, best_count = (n, float(n @ a)), count
    if best is None:
        return None
    n, d = best
    inliers = pts[np.abs(pts @ n - d) < tolerance_m]
    n, d, _ = fit_plane(inliers)
    if d > 0:
        n, d = -n, -d
    return n, d
