"""Calibration targets (ChArUco boards with AprilTag 36h11 markers) and their detection with OpenCV. No ROS.

A target YAML (``config/calibration_targets/<name>.yaml``) gives the board (squares, sizes, marker ids) and its
nominal mount on the robot (link + ``T_link_board``). Board frame = OpenCV's: origin at the top-left outer corner,
x along columns, y along rows, z into the board (away from a camera that sees the printed side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dexstack.camera_model import CameraModel
from dexstack.config_loader import ConfigError, build, internal, read_yaml, resolve_data_file
from dexstack.transforms import make_transform, rpy_to_matrix


class TargetError(ConfigError):
    """A calibration target file is missing or malformed."""


@dataclass(frozen=True)
class TargetMount:
    link: str = "panda_link8"
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def T_link_board(self) -> np.ndarray:
        return make_transform(self.xyz, rpy_to_matrix(self.rpy))


@dataclass(frozen=True)
class CalibrationTarget:
    name: str = internal("charuco_5x5_40mm")  # the file's stem
    type: str = "charuco"
    dictionary: str = "DICT_APRILTAG_36h11"
    squares_x: int = 5
    squares_y: int = 5
    square_size_m: float = 0.04
    marker_size_m: float = 0.03
    first_marker_id: int = 100
    mount: TargetMount = field(default_factory=TargetMount)

    def __post_init__(self) -> None:
        if self.type != "charuco":
            raise TargetError(f"target type '{self.type}' is not supported (supported: charuco)")
        if not hasattr(cv2.aruco, self.dictionary):
            raise TargetError(f"unknown ArUco dictionary '{self.dictionary}'")
        if self.squares_x < 3 or self.squares_y < 3:
            raise TargetError("a ChArUco board needs at least 3x3 squares")
        if not 0 < self.marker_size_m < self.square_size_m:
            raise TargetError(f"marker_size_m {self.marker_size_m} must be in (0, square_size_m "
                              f"{self.square_size_m})")

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_size_m, self.squares_y * self.square_size_m

    @property
    def n_markers(self) -> int:
        return (self.squares_x * self.squares_y) // 2

    @property
    def n_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    def board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        ids = np.arange(self.first_marker_id, self.first_marker_id + self.n_markers, dtype=np.int32)
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_size_m, self.marker_size_m,
                                      dictionary, ids)

    def corner_points(self) -> np.ndarray:
        """(n_corners, 3) inner corners in the board frame, indexed by ChArUco corner id."""
        return np.asarray(self.board().getChessboardCorners(), dtype=float).reshape(-1, 3)

    def image(self, px_per_m: float = 5000.0) -> np.ndarray:
        """The board as a grey uint8 image without margin, ``px_per_m`` pixels per metre (for printing/texture)."""
        w, h = (int(round(s * px_per_m)) for s in self.size_m)
        return self.board().generateImage((w, h), marginSize=0, borderBits=1)


def target_path(name_or_path: str) -> Path:
    return resolve_data_file(name_or_path, "config/calibration_targets", what="calibration target",
                             error=TargetError, known_as="targets")


def load_target(name_or_path: str) -> CalibrationTarget:
    """``charuco_5x5_40mm`` -> ``config/calibration_targets/charuco_5x5_40mm.yaml`` (or a path), read strictly."""
    path = target_path(name_or_path)
    return build(CalibrationTarget, read_yaml(path, TargetError), str(path), error=TargetError, name=path.stem)


@dataclass(frozen=True)
class DetectionLimits:
    """What makes a view usable. Views failing one are rejected with that reason."""

    min_corners: int = 6  # fewer ChArUco corners: partial view, too little to constrain the pose
    min_corner_fraction: float = 0.4  # of the board's corners
    max_obliquity_deg: float = 65.0  # angle between the board normal and the viewing ray
    min_sharpness: float = 20.0  # variance of the Laplacian inside the board's image region (blur)
    max_pnp_rms_px: float = 2.0  # a board pose that does not explain its corners (wrong board layout/ids)
    max_depth_scale_error: float = 0.05  # PnP distance vs aligned depth at the corners (wrong square size)


@dataclass
class Detection:
    ok: bool
    reason: str  # why it was rejected ("" when ok)
    corner_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    image_points_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    object_points_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    T_camera_board: np.ndarray | None = None  # PnP pose with the given intrinsics
    pnp_rms_px: float = float("nan")
    obliquity_deg: float = float("nan")
    sharpness: float = float("nan")


class TargetDetector:
    """ChArUco detection + per-view quality checks."""

    def __init__(self, target: CalibrationTarget, limits: DetectionLimits | None = None):
        self.target = target
        self.limits = limits or DetectionLimits()
        board = target.board()
        params = cv2.aruco.CharucoParameters()
        detector_params = cv2.aruco.DetectorParameters()
        detector_params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        self._detector = cv2.aruco.CharucoDetector(board, params, detector_params)
        self._corners = target.corner_points()

    def detect(self, color_rgb8: np.ndarray, camera: CameraModel, depth_m: np.ndarray | None = None) -> Detection:
        """Detect the board; ``depth_m`` (aligned, metres, NaN/0 = hole) checks the board's scale."""
        lim = self.limits
        grey = cv2.cvtColor(color_rgb8, cv2.COLOR_RGB2GRAY) if color_rgb8.ndim == 3 else color_rgb8
        corners, ids, marker_corners, marker_ids = self._detector.detectBoard(grey)
        n_markers = 0 if marker_ids is None else len(marker_ids)
        if ids is None or len(ids) == 0:
            why = "target not visible" if n_markers == 0 else f"{n_markers} markers but no board corner"
            return Detection(False, why)
        ids = ids.reshape(-1).astype(int)
        uv = corners.reshape(-1, 2).astype(float)
        need = max(lim.min_corners, int(np.ceil(lim.min_corner_fraction * self.target.n_corners)))
        if len(ids) < need:
            return Detection(False, f"partial view: {len(ids)} of {self.target.n_corners} corners (need {need})",
                             ids, uv, self._corners[ids])
        obj = self._corners[ids]
        ok, rvec, tvec = cv2.solvePnP(obj, uv, camera.K, camera.opencv_distortion(), flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            return Detection(False, "no board pose (PnP failed)", ids, uv, obj)
        R, _ = cv2.Rodrigues(rvec)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, tvec.reshape(3)
        proj = camera.project(obj @ R.T + T[:3, 3])
        rms = float(np.sqrt(np.mean(np.sum((proj - uv) ** 2, axis=1))))
        centre = T[:3, :3] @ np.array([*np.array(self.target.size_m) / 2, 0.0]) + T[:3, 3]
        cos = abs(float(T[:3, 2] @ centre / np.linalg.norm(centre)))
        obliquity = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        x0, y0 = np.floor(uv.min(axis=0)).astype(int)
        x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 1
        roi = grey[max(y0, 0):y1, max(x0, 0):x1]
        sharpness = float(cv2.Laplacian(roi, cv2.CV_64F).var()) if roi.size else 0.0
        det = Detection(True, "", ids, uv, obj, T, rms, obliquity, sharpness)
        scale = self._depth_scale(T, obj, uv, depth_m) if depth_m is not None else None
        if scale is not None and abs(scale - 1.0) > lim.max_depth_scale_error:
            det.ok, det.reason = False, (f"board size disagrees with depth: the corners are {scale:.2f}x as far as "
                                         f"the board's square_size_m {self.target.square_size_m} implies "
                                         "(wrong board size?)")
        elif rms > lim.max_pnp_rms_px:
            det.ok, det.reason = False, (f"corners do not fit the board (PnP RMS {rms:.1f} px > {lim.max_pnp_rms_px}): "
                                         "wrong board size or layout?")
        elif obliquity > lim.max_obliquity_deg:
            det.ok, det.reason = False, f"oblique view: {obliquity:.0f} deg > {lim.max_obliquity_deg:.0f} deg"
        elif sharpness < lim.min_sharpness:
            det.ok, det.reason = False, f"blurred: sharpness {sharpness:.0f} < {lim.min_sharpness:.0f}"
        return det

    @staticmethod
    def _depth_scale(T: np.ndarray, obj: np.ndarray, uv: np.ndarray, depth_m: np.ndarray) -> float | None:
        """median(measured depth / PnP depth) at the corners: 1 when the board's size is right."""
        h, w = depth_m.shape
        u = np.clip(np.rint(uv[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.rint(uv[:, 1]).astype(int), 0, h - 1)
        z_meas = depth_m[v, u]
        z_pnp = (obj @ T[:3, :3].T + T[:3, 3])[:, 2]
        good = np.isfinite(z_meas) & (z_meas > 0)
        if good.sum() < 4:
            return None
        return float(np.median(z_meas[good] / z_pnp[good]))
