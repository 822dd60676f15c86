"""Camera calibration files (``calibration/<cell>/camera.yaml``): intrinsics and extrinsics per cell."""

from dexstack.calibration.camera import CalibrationError, CameraCalibration, load_camera_calibration

__all__ = ["CalibrationError", "CameraCalibration", "load_camera_calibration"]
