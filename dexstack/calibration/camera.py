"""Read and write camera calibration YAML (intrinsics + ``T_parent_camera`` extrinsics)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dexstack.camera_model import CameraModel
from dexstack.config_loader import ConfigError, check_keys, read_yaml, resolve_data_file
from dexstack.transforms import pose_to_transform, transform_to_pose

FORMAT_VERSION = 1


class CalibrationError(ConfigError):
    """A calibration file is missing or malformed."""


@dataclass(frozen=True)
class CameraCalibration:
    camera_name: str
    parent_frame: str
    frame_id: str
    T_parent_camera: np.ndarray  # 4x4, pose of the optical frame in parent_frame
    intrinsics: CameraModel
    depth_scale_m: float = 0.001
    source: Path | None = None

    def to_yaml(self) -> str:
        xyz, quat = transform_to_pose(self.T_parent_camera)
        doc = {
            "version": FORMAT_VERSION,
            "camera_name": self.camera_name,
            "parent_frame": self.parent_frame,
            "frame_id": self.frame_id,
            "T_parent_camera": {"xyz": xyz.tolist(), "quat_xyzw": quat.tolist()},
            "intrinsics": self.intrinsics.to_dict(),
            "depth_scale_m": self.depth_scale_m,
        }
        return yaml.safe_dump(doc, sort_keys=False)


def calibration_path(cell_or_path: str) -> Path:
    """``sim_tabletop`` -> ``calibration/sim_tabletop/camera.yaml``; a YAML path is used as is."""
    return resolve_data_file(cell_or_path, "calibration", what="camera calibration", filename="{name}/camera.yaml",
                             error=CalibrationError, known_as="cells")


_KEYS = ("version", "camera_name", "parent_frame", "frame_id", "T_parent_camera", "intrinsics", "depth_scale_m")
_INTRINSICS_KEYS = ("width", "height", "fx", "fy", "cx", "cy", "distortion_model", "D")


def load_camera_calibration(cell_or_path: str) -> CameraCalibration:
    path = calibration_path(cell_or_path)
    raw = read_yaml(path, CalibrationError)
    check_keys(raw, _KEYS, str(path), error=CalibrationError)
    check_keys(raw.get("T_parent_camera", {}), ("xyz", "quat_xyzw"), str(path), "T_parent_camera", CalibrationError)
    check_keys(raw.get("intrinsics", {}), _INTRINSICS_KEYS, str(path), "intrinsics", CalibrationError)
    try:
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {raw.get('version')!r} (expected {FORMAT_VERSION})")
        pose = raw["T_parent_camera"]
        intr = raw["intrinsics"]
        intrinsics = CameraModel.from_dict(intr)
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


def save_camera_calibration(calibration: CameraCalibration, path: str | Path) -> Path | None:
    """Write ``calibration`` to ``path`` atomically. An existing file is first copied to a dated backup
    (``camera.yaml.YYYYmmdd-HHMMSS.bak``, never overwritten); returns the backup's path (None if there was none)."""
    path = Path(path)
    backup = None
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.{stamp}-{n}.bak")
            n += 1
        shutil.copy2(path, backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    header = (f"# Camera calibration (dexstack calibration format, version {FORMAT_VERSION}), written by "
              f"dexstack-calibrate {time.strftime('%Y-%m-%d %H:%M:%S')}.\n")
    tmp.write_text(header + calibration.to_yaml())
    os.replace(tmp, path)
    return backup
