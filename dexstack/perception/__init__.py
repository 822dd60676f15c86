"""Perception core (no ROS): 3-D human hand keypoints and 6-D object pose in the robot base frame from RGB-D.

- :mod:`~dexstack.perception.hand`: 2-D detector -> depth lifting -> bone-length check -> One-Euro filter -> wrist
  pose (:class:`HandPipeline`); detectors in :mod:`~dexstack.perception.hand_detectors` (MediaPipe Hands).
- :mod:`~dexstack.perception.object_pose`: AprilTag (IPPE_SQUARE + depth) or model (point-to-plane ICP) pose of a
  known object (:class:`ObjectPoseEstimator`), objects in ``config/objects/`` (:mod:`~dexstack.perception.objects`).
- :mod:`~dexstack.perception.rgbd`: image buffers to arrays, color/depth pairing by stamp.

Frames and units: metres, radians, seconds; ``T_a_b`` is the pose of frame b in frame a; the camera frame is the
color optical frame, the base frame the calibration's parent frame.
"""

from dexstack.perception.hand import (
    BONES,
    KEYPOINT_NAMES,
    HandDetector,
    HandEstimate,
    HandFrameResult,
    HandObservation,
    HandPipeline,
    HandPipelineConfig,
)
from dexstack.perception.object_pose import ObjectPoseConfig, ObjectPoseEstimator, ObjectPoseResult
from dexstack.perception.objects import ObjectModel, load_object_model

__all__ = [
    "BONES", "KEYPOINT_NAMES", "HandDetector", "HandEstimate", "HandFrameResult", "HandObservation", "HandPipeline",
    "HandPipelineConfig", "ObjectModel", "ObjectPoseConfig", "ObjectPoseEstimator", "ObjectPoseResult",
    "load_object_model",
]
