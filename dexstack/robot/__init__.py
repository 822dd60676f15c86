"""Robot profiles, the merged arm+hand description, and pinocchio kinematics (the single source of truth)."""

from dexstack.robot.description import JointLimits, RobotDescription, load_description
from dexstack.robot.profile import ProfileError, RobotProfile, load_profile

__all__ = ["JointLimits", "ProfileError", "RobotDescription", "RobotProfile", "load_description", "load_profile"]
