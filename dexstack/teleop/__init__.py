"""Hand-tracking teleoperation: human keypoints (robot base frame) -> retargeting + arm IK -> joint targets."""

from dexstack.teleop.controller import TeleopCommand, TeleopConfig, TeleopController
from dexstack.teleop.scripted_hand import ScriptedHumanHand

__all__ = ["ScriptedHumanHand", "TeleopCommand", "TeleopConfig", "TeleopController"]
