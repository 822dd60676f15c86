"""Retargeting: human hand keypoints -> robot hand joints (vector / position / DexPilot), wrist pose -> arm IK.

Pure core (no rclpy). Robot joints, limits and frames come from the robot description
(:func:`dexstack.robot.load_description`); per-hand settings from ``config/retarget/<hand>.yaml``.
"""

from dexstack.retarget.arm import ArmIK, ArmIKConfig, IKResult, WristMapper, WristMapperConfig
from dexstack.retarget.config import HandRetargetConfig, load_retarget_config
from dexstack.retarget.hand import HandRetargeter, SolveInfo
from dexstack.retarget.hand_model import HandModel
from dexstack.retarget.keypoints import KeypointError, check_keypoints, hand_frame_from_keypoints, to_hand_frame

__all__ = [
    "ArmIK", "ArmIKConfig", "HandModel", "HandRetargetConfig", "HandRetargeter", "IKResult", "KeypointError",
    "SolveInfo", "WristMapper", "WristMapperConfig", "check_keypoints", "hand_frame_from_keypoints",
    "load_retarget_config", "to_hand_frame",
]
