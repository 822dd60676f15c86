"""Read and write camera calibration YAML (intrinsics + ``T_parent_camera`` extrinsics)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dexstack.paths import data_path
from dexstack.transforms import pose_to_transform, transform_to_pose

FORMAT_VERSION = 1


class CalibrationError(ValueError):
    """A calibration file is missing or malformed."""


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    D: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CameraCalibration:
    camera_name: str
    parent_frame: str
    frame_id: str
    T_parent_camera: np.ndarray  # 4x4, pose of the optical frame in parent_frame
    intrinsics: Intrinsics
    depth_scale_m: float = 0.001
    source: Path | None = None

    def to_yaml(self) -> str:
        xyz, quat = transform_to_pose(self.T_parent_camera)
        i = self.intrinsics
        doc = {
            "version": FORMAT_VERSION,
            "camera_name": self.camera_name,
            "parent_frame": self.parent_frame,
            "frame_id": self.frame_id,
            "T_parent_camera": {"xyz": xyz.tolist(), "quat_xyzw": quat.tolist()},
            "intrinsics": {"width": i.width, "height": i.height, "fx": i.fx, "fy": i.fy, "cx": i.cx, "cy": i.cy,
                           "distortion_model": i.distortion_model, "D": list(i.D)},
            "depth_scale_m": self.depth_scale_m,
        }
        return yaml.safe_dump(doc, sort_keys=False)


def calibration_path(cell_or_path: str) -> Path:
    """``sim_tabletop`` -> ``calibration/sim_tabletop/camera.yaml``; a YAML path is used as is."""
    path = Path(cell_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = data_path("calibration", cell_or_path, "camera.yaml")
    if not path.is_file():
        raise CalibrationError(f"camera calibration '{cell_or_path}' not found (looked for {path})")
    return path


def load_camera_calibration(cell_or_path: str) -> CameraCalibration:
    path = calibration_path(cell_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {raw.get('version')!r} (expected {FORMAT_VERSION})")
        pose = raw["T_parent_camera"]
        intr = raw["intrinsics"]
        intrinsics = Intrinsics(
            width=int(intr["width"]), height=int(intr["height"]),
            fx=float(intr["fx"]), fy=float(intr["fy"]), cx=float(intr["cx"]), cy=float(intr["cy"]),
            distortion_model=str(intr.get("distortion_model", "plumb_bob")),
            D=tuple(float(d) for d in intr.get("D", (0.0,) * 5)),
        )
        if intrinsics.width <= 0 or intrinsics.height <= 0 or intrinsics.fx <= 0 or intrinsics.fy <= 0:
            raise ValueError("width, height, fx, fy must be positive")
        return CameraCalibration(
            camera_name=str(raw["camera_name"]),
            parent_frame=str(raw["parent_frame"]),
            frame_id=str(raw["frame_id"]),
            T_parent_camera=pose_to_transform(pose["xyz"], pose["quat_xyzw"]),
            intrinsics=intrinsics,
            depth_scale_m=float(raw.get("depth_scale_m", 0.001)),
            source=path,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationError(f"{path}: {exc}") from exc
