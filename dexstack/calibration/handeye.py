"""Hand-eye calibration: OpenCV closed forms, then a joint reprojection refinement (scipy), outliers, bootstrap.

No ROS. Two set-ups, with L = the robot link the board or camera is mounted on, measured by forward kinematics:

- ``eye_to_hand``: fixed camera, board on L. Unknowns X = T_base_camera, Y = T_L_board;
  per sample i: T_base_L(i) @ Y = X @ T_camera_board(i).
- ``eye_in_hand``: camera on L, board fixed in the base frame. Unknowns X = T_L_camera, Y = T_base_board;
  per sample i: T_base_L(i) @ X @ T_camera_board(i) = Y.

The closed forms (``cv2.calibrateHandEye``: Tsai, Park, Horaud, Andreff, Daniilidis; ``cv2.calibrateRobotWorldHandEye``:
Shah, Li) seed a least-squares refinement of X and Y (and optionally fx, fy, cx, cy) that minimises the board
corners' reprojection error in pixels over all samples, with a Huber loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from dexstack.camera_model import CameraModel
from dexstack.transforms import invert_transform, make_transform, rotation_angle_rad

MODES = ("eye_to_hand", "eye_in_hand")
HAND_EYE_METHODS = {"tsai": cv2.CALIB_HAND_EYE_TSAI, "park": cv2.CALIB_HAND_EYE_PARK,
                    "horaud": cv2.CALIB_HAND_EYE_HORAUD, "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
                    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS}
ROBOT_WORLD_METHODS = {"shah": cv2.CALIB_ROBOT_WORLD_HAND_EYE_SHAH, "li": cv2.CALIB_ROBOT_WORLD_HAND_EYE_LI}


class HandEyeError(ValueError):
    """The samples cannot give a calibration; the message names the cause."""


@dataclass(frozen=True)
class Sample:
    """One robot pose with its board detection."""

    T_base_link: np.ndarray  # 4x4, the mount link by forward kinematics of the measured joints
    image_points_px: np.ndarray  # (N, 2) detected board corners
    object_points_m: np.ndarray  # (N, 3) the same corners in the board frame
    T_camera_board: np.ndarray  # 4x4, PnP pose of the board with the working intrinsics


@dataclass
class HandEyeResult:
    mode: str
    T_parent_camera: np.ndarray  # eye_to_hand: T_base_camera; eye_in_hand: T_link_camera
    T_other_board: np.ndarray  # eye_to_hand: T_link_board; eye_in_hand: T_base_board
    camera: CameraModel  # intrinsics the extrinsics were solved with
    method: str  # the closed form that seeded the best refinement
    reproj_px_rms: float
    per_sample_rms_px: np.ndarray
    outliers: list[int]  # indices of samples left out of the final solve
    closed_forms: dict[str, float]  # method -> reprojection RMS (px) of its closed-form solution (nan: failed)
    bootstrap_trans_mm_std: float = float("nan")
    bootstrap_rot_deg_std: float = float("nan")
    refined_camera: CameraModel | None = None  # intrinsics refined from the same samples (if asked)
    rotation_coverage: np.ndarray = field(default_factory=lambda: np.zeros(3))


# ---------------------------------------------------------------------------------------------- small helpers
def _T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return make_transform(np.asarray(t).reshape(3), R)


def _to_vec(T: np.ndarray) -> np.ndarray:
    return np.concatenate((Rotation.from_matrix(T[:3, :3]).as_rotvec(), T[:3, 3]))


def _from_vec(v: np.ndarray) -> np.ndarray:
    return _T(Rotation.from_rotvec(v[:3]).as_matrix(), v[3:6])


def pose_difference(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation difference in mm, rotation difference in deg) between two poses."""
    return (1000.0 * float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3])),
            float(np.degrees(rotation_angle_rad(T_a[:3, :3].T @ T_b[:3, :3]))))


def rotation_coverage(rotations: list[np.ndarray], min_angle_deg: float = 3.0) -> np.ndarray:
    """How well relative rotations between samples span 3-D: eigenvalues (descending, largest = 1) of the
    angle-weighted scatter of their axes. [1, 0, 0] = every rotation about one axis (degenerate for hand-eye)."""
    axes = []
    for i in range(len(rotations)):
        for j in range(i + 1, len(rotations)):
            rv = Rotation.from_matrix(rotations[i].T @ rotations[j]).as_rotvec()
            angle = np.linalg.norm(rv)
            if np.degrees(angle) >= min_angle_deg:
                axes.append(rv / angle * min(angle, 0.5))
    if not axes:
        return np.zeros(3)
    A = np.asarray(axes)
    ev = np.sort(np.linalg.eigvalsh(A.T @ A))[::-1]
    return ev / ev[0]


# ---------------------------------------------------------------------------------------------- model
def _camera_from_board(mode: str, X: np.ndarray, Y: np.ndarray, T_base_link: np.ndarray) -> np.ndarray:
    """T_camera_board predicted for one sample."""
    if mode == "eye_to_hand":
        return invert_transform(X) @ T_base_link @ Y
    return invert_transform(X) @ invert_transform(T_base_link) @ Y


def _residuals(mode: str, X: np.ndarray, Y: np.ndarray, camera: CameraModel, samples: list[Sample]) -> np.ndarray:
    out = []
    for s in samples:
        T = _camera_from_board(mode, X, Y, s.T_base_link)
        p = s.object_points_m @ T[:3, :3].T + T[:3, 3]
        out.append((camera.project(p) - s.image_points_px).reshape(-1))
    return np.concatenate(out)


def per_sample_rms(mode: str, X: np.ndarray, Y: np.ndarray, camera: CameraModel,
                   samples: list[Sample]) -> np.ndarray:
    return np.array([float(np.sqrt(np.mean(_residuals(mode, X, Y, camera, [s]) ** 2) * 2)) for s in samples])


def _rms(mode, X, Y, camera, samples) -> float:
    r = _residuals(mode, X, Y, camera, samples)
    return float(np.sqrt(np.mean(r ** 2) * 2))  # RMS of the 2-D pixel error


# ---------------------------------------------------------------------------------------------- closed forms
def closed_forms(mode: str, samples: list[Sample]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every OpenCV closed form: method -> (X, Y). Methods that fail are left out."""
    T_bl = [s.T_base_link for s in samples]
    T_cb = [s.T_camera_board for s in samples]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    # calibrateHandEye solves AX = XB for the camera-to-"gripper" pose; eye-to-hand passes the inverse motions.
    g2b = T_bl if mode == "eye_in_hand" else [invert_transform(T) for T in T_bl]
    for name, flag in HAND_EYE_METHODS.items():
        try:
            R, t = cv2.calibrateHandEye([T[:3, :3] for T in g2b], [T[:3, 3] for T in g2b],
                                        [T[:3, :3] for T in T_cb], [T[:3, 3] for T in T_cb], method=flag)
        except cv2.error:
            continue
        X = _T(R, t)
        if not np.all(np.isfinite(X)):
            continue
        # Y from every sample, averaged (rotation by SVD projection of the mean matrix).
        Ys = [T @ X @ c if mode == "eye_in_hand" else invert_transform(T) @ X @ c for T, c in zip(T_bl, T_cb)]
        out[name] = (X, _mean_pose(Ys))
    # calibrateRobotWorldHandEye: cTw wTb = cTg gTb. Eye-in-hand: world = board, cam = camera, gripper = link.
    # Eye-to-hand: swap roles, "cam" = board (moves with the link), "world" = camera.
    for name, flag in ROBOT_WORLD_METHODS.items():
        if mode == "eye_in_hand":
            A = T_cb
        else:
            A = [invert_transform(c) for c in T_cb]
        B = [invert_transform(T) for T in T_bl]
        try:
            R_bw, t_bw, R_gc, t_gc = cv2.calibrateRobotWorldHandEye(
                [T[:3, :3] for T in A], [T[:3, 3:4].copy() for T in A], [T[:3, :3] for T in B],
                [T[:3, 3:4].copy() for T in B], method=flag)  # translations as 3x1 columns (3-vectors fail)
        except cv2.error:
            continue
        wTb, cTg = _T(R_bw, t_bw), _T(R_gc, t_gc)
        if mode == "eye_in_hand":  # X = T_link_camera = inv(cTg), Y = T_base_board = inv(wTb)
            X, Y = invert_transform(cTg), invert_transform(wTb)
        else:  # wTb = T_camera_base -> X = T_base_camera; cTg = T_board_link -> Y = T_link_board
            X, Y = invert_transform(wTb), invert_transform(cTg)
        if np.all(np.isfinite(X)) and np.all(np.isfinite(Y)):
            out[name] = (X, Y)
    return out


def _mean_pose(Ts: list[np.ndarray]) -> np.ndarray:
    U, _, Vt = np.linalg.svd(np.mean([T[:3, :3] for T in Ts], axis=0))
    R = U @ Vt
    if np.linalg.det(R) < 0:
        R = U @ np.diag([1, 1, -1]) @ Vt
    return _T(R, np.mean([T[:3, 3] for T in Ts], axis=0))


# ---------------------------------------------------------------------------------------------- refinement
def refine(mode: str, X0: np.ndarray, Y0: np.ndarray, camera: CameraModel, samples: list[Sample],
           refine_intrinsics: bool = False, loss_scale_px: float = 1.0
           ) -> tuple[np.ndarray, np.ndarray, CameraModel]:
    """Least-squares X, Y (and fx, fy, cx, cy) minimising the reprojection error of every corner."""
    def unpack(v):
        cam = camera
        if refine_intrinsics:
            fx, fy, cx, cy = v[12:16]
            cam = replace(camera, fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy))
        return _from_vec(v[:6]), _from_vec(v[6:12]), cam

    def fun(v):
        X, Y, cam = unpack(v)
        return _residuals(mode, X, Y, cam, samples)

    v0 = np.concatenate((_to_vec(X0), _to_vec(Y0)))
    if refine_intrinsics:
        v0 = np.concatenate((v0, [camera.fx, camera.fy, camera.cx, camera.cy]))
    sol = least_squares(fun, v0, loss="huber", f_scale=loss_scale_px, x_scale="jac", max_nfev=200)
    return unpack(sol.x)


# ---------------------------------------------------------------------------------------------- the solve
@dataclass(frozen=True)
class SolveConfig:
    min_samples: int = 6
    min_coverage: float = 0.02  # second rotation-axis eigenvalue (relative): below = rotations about one axis
    outlier_px: float = 2.0  # a sample whose RMS exceeds max(outlier_px, 3 x median) is left out
    bootstrap: int = 20
    refine_intrinsics: bool = False
    seed: int = 0


def check_samples(mode: str, samples: list[Sample], config: SolveConfig) -> np.ndarray:
    """Raise HandEyeError naming the cause when the samples cannot determine the calibration; else the coverage."""
    if mode not in MODES:
        raise HandEyeError(f"mode '{mode}' is not one of {MODES}")
    if len(samples) < max(3, config.min_samples):
        raise HandEyeError(f"too few samples: {len(samples)} usable, need at least {max(3, config.min_samples)}")
    cov = rotation_coverage([s.T_base_link[:3, :3] for s in samples])
    if cov[1] < config.min_coverage:
        raise HandEyeError(
            "degenerate motion: the robot's rotations between samples are all about one axis (axis coverage "
            f"{cov[1]:.3f} < {config.min_coverage}); the calibration is not determined. Vary the rotation axes "
            "(tilt the link about at least two different axes)")
    return cov


def solve(mode: str, samples: list[Sample], camera: CameraModel, config: SolveConfig | None = None
          ) -> HandEyeResult:
    """Calibrate from detected samples. Raises :class:`HandEyeError` with the cause when it cannot."""
    config = config or SolveConfig()
    coverage = check_samples(mode, samples, config)
    seeds = closed_forms(mode, samples)
    scores = {name: _rms(mode, X, Y, camera, samples) for name, (X, Y) in seeds.items()}
    if not seeds:
        raise HandEyeError("every OpenCV hand-eye method failed on these samples")
    # Refine from the best two closed forms (they differ on noisy data); keep the lowest final error.
    best = None
    for name in sorted(scores, key=scores.get)[:2]:
        X, Y, _ = refine(mode, *seeds[name], camera, samples)
        err = _rms(mode, X, Y, camera, samples)
        if best is None or err < best[0]:
            best = (err, name, X, Y)
    _, method, X, Y = best
    per = per_sample_rms(mode, X, Y, camera, samples)
    limit = max(config.outlier_px, 3.0 * float(np.median(per)))
    outliers = [i for i, e in enumerate(per) if e > limit]
    kept = [s for i, s in enumerate(samples) if i not in outliers]
    if outliers:
        if len(kept) < max(3, config.min_samples):
            raise HandEyeError(f"too few consistent samples: {len(outliers)} of {len(samples)} are outliers "
                               f"(reprojection > {limit:.1f} px); the target or the robot moved during capture, or "
                               "the board size is wrong")
        X, Y, _ = refine(mode, X, Y, camera, kept)
    rms = _rms(mode, X, Y, camera, kept)
    result = HandEyeResult(mode, X, Y, camera, method, rms, per_sample_rms(mode, X, Y, camera, samples), outliers,
                           scores, rotation_coverage=coverage)
    if config.refine_intrinsics:
        _, _, result.refined_camera = refine(mode, X, Y, camera, kept, refine_intrinsics=True)
    if config.bootstrap > 1:
        rng = np.random.default_rng(config.seed)
        ts, rs = [], []
        for _ in range(config.bootstrap):
            pick = [kept[i] for i in rng.integers(0, len(kept), len(kept))]
            Xb, _, _ = refine(mode, X, Y, camera, pick)
            _, dr = pose_difference(Xb, X)
            ts.append(Xb[:3, 3])
            rs.append(dr)
        result.bootstrap_trans_mm_std = 1000.0 * float(np.sqrt(np.sum(np.var(np.asarray(ts), axis=0))))
        result.bootstrap_rot_deg_std = float(np.sqrt(np.mean(np.square(rs))))
    return result
