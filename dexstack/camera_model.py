"""The one camera model of dexstack: pinhole intrinsics + lens distortion, with projection helpers. No ROS.

Used by the calibration files, the RealSense/software camera sources, the sim's renderer and perception.
Frames: the REP-103 optical frame (z forward, x right, y down); pixels (u right, v down) with the pixel centre at
integer coordinates (OpenCV convention). Distortion follows sensor_msgs/CameraInfo names and OpenCV's coefficient
order: ``plumb_bob`` (k1, k2, p1, p2, k3), ``rational_polynomial`` (k1, k2, p1, p2, k3, k4, k5, k6),
``equidistant`` (k1, k2, k3, k4; OpenCV's fisheye). Any other name (e.g. librealsense ``ftheta``) is carried
through to CameraInfo but cannot be projected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DISTORTION_SIZES = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
IDENTITY_R = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one image stream (the color stream; aligned depth shares them), in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    D: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or not self.fx > 0 or not self.fy > 0:
            raise ValueError(f"camera model needs positive width, height, fx, fy (got {self.width}x{self.height}, "
                             f"fx={self.fx}, fy={self.fy})")
        n = DISTORTION_SIZES.get(self.distortion_model)
        if n is not None and len(self.D) != n:
            raise ValueError(f"distortion_model '{self.distortion_model}' takes {n} coefficients, got {len(self.D)}")
        object.__setattr__(self, "D", tuple(float(d) for d in self.D))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_k(cls, width: int, height: int, k: Any, distortion_model: str = "plumb_bob",
               D: Any = None) -> CameraModel:
        """From a row-major 3x3 (or 9-vector) K, as in sensor_msgs/CameraInfo."""
        k = np.asarray(k, dtype=float).reshape(3, 3)
        if D is None or len(D) == 0:
            D = (0.0,) * DISTORTION_SIZES.get(distortion_model, 0)
        return cls(int(width), int(height), float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                   distortion_model or "plumb_bob", tuple(float(d) for d in D))

    @classmethod
    def from_camera_info(cls, msg: Any) -> CameraModel:
        """From a sensor_msgs/CameraInfo (or anything with its width, height, k, d, distortion_model)."""
        return cls.from_k(msg.width, msg.height, msg.k, msg.distortion_model or "plumb_bob", list(msg.d))

    @classmethod
    def from_dict(cls, d: dict) -> CameraModel:
        """From the ``intrinsics`` mapping of a calibration file."""
        model = str(d.get("distortion_model", "plumb_bob"))
        D = d.get("D")
        if D is None:
            D = (0.0,) * DISTORTION_SIZES.get(model, 5)
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]),
                   model, tuple(float(x) for x in D))

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": float(self.fx), "fy": float(self.fy),
                "cx": float(self.cx), "cy": float(self.cy), "distortion_model": self.distortion_model,
                "D": [float(d) for d in self.D]}

    # ------------------------------------------------------------------ matrices
    @property
    def K(self) -> np.ndarray:
        """3x3 camera matrix mapping camera-frame rays to homogeneous pixels."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(d != 0.0 for d in self.D)

    def opencv_distortion(self) -> np.ndarray | None:
        """Distortion coefficients for OpenCV's pinhole functions (solvePnP, projectPoints); None when there is
        none. Raises for models OpenCV's pinhole functions do not take (equidistant uses cv2.fisheye)."""
        if not self.has_distortion:
            return None
        if self.distortion_model not in ("plumb_bob", "rational_polynomial"):
            raise ValueError(f"distortion_model '{self.distortion_model}' is not an OpenCV pinhole model")
        return np.asarray(self.D, dtype=float)

    def camera_info_fields(self) -> dict:
        """Every sensor_msgs/CameraInfo field but the header, for an unrectified stream with these intrinsics
        (R identity, P = [K | 0], no binning or ROI)."""
        fx, fy, cx, cy = float(self.fx), float(self.fy), float(self.cx), float(self.cy)
        return {
            "width": int(self.width),
            "height": int(self.height),
            "distortion_model": self.distortion_model,
            "d": [float(d) for d in self.D],
            "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
            "r": list(IDENTITY_R),
            "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
        }

    # ------------------------------------------------------------------ geometry
    def distort_normalized(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) ideal normalised coordinates (x/z, y/z) -> distorted normalised coordinates.

        plumb_bob / rational: x_d = x * (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
        + 2 p1 x y + p2 (r^2 + 2 x^2), y likewise; equidistant: theta = atan(r),
        theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8), x_d = x theta_d / r.
        """
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        if not self.has_distortion:
            return xy
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        D = self.D
        if self.distortion_model in ("plumb_bob", "rational_polynomial"):
            k1, k2, p1, p2, k3 = D[:5]
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            if self.distortion_model == "rational_polynomial":
                k4, k5, k6 = D[5:8]
                radial = radial / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
            xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            return np.column_stack((xd, yd))
        if self.distortion_model == "equidistant":
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1.0 + t2 * (D[0] + t2 * (D[1] + t2 * (D[2] + t2 * D[3]))))
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(r > 1e-12, theta_d / r, 1.0)
            return xy * scale[:, None]
        raise ValueError(f"cannot project with distortion_model '{self.distortion_model}'")

    def project(self, p_camera_m: np.ndarray) -> np.ndarray:
        """(N, 3) points in the camera frame -> (N, 2) pixels, lens distortion applied (points behind the camera
        give inf/nan)."""
        p = np.asarray(p_camera_m, dtype=float).reshape(-1, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = p[:, :2] / p[:, 2:3]
        xy = self.distort_normalized(xy)
        return np.column_stack((self.fx * xy[:, 0] + self.cx, self.fy * xy[:, 1] + self.cy))

    def undistort_pixels(self, uv_px: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixels -> (N, 2) ideal normalised coordinates (x/z, y/z)."""
        uv = np.asarray(uv_px, dtype=float).reshape(-1, 2)
        xy = np.column_stack(((uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy))
        if not self.has_distortion or len(uv) == 0:
            return xy
        import cv2  # only needed for distorted cameras

        pts = uv.reshape(-1, 1, 2)
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, self.K, np.asarray(self.D, dtype=float))
        else:
            out = cv2.undistortPoints(pts, self.K, self.opencv_distortion())
        return out.reshape(-1, 2)

    def unproject(self, uv_px: np.ndarray, z_m: np.ndarray) -> np.ndarray:
        """(N, 2) pixels and (N,) depths along the optical axis -> (N, 3) points in the camera frame."""
        z_m = np.asarray(z_m, dtype=float).reshape(-1)
        xy = self.undistort_pixels(uv_px)
        return np.column_stack((xy[:, 0] * z_m, xy[:, 1] * z_m, z_m))

    @property
    def fovy_rad(self) -> float:
        """Vertical field of view of a centred pinhole with these height and fy."""
        return 2.0 * float(np.arctan(self.height / 2.0 / self.fy))
