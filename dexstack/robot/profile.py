"""Robot profile: which descriptions make up the robot and how its parts are mounted and commanded.

A profile is ``config/robots/<name>.yaml``. It never repeats joint names or limits: those come from the URDFs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dexstack.config_loader import ConfigError, internal, load, resolve_data_file


class ProfileError(ConfigError):
    """A robot profile is missing, malformed, or disagrees with its descriptions."""


@dataclass(frozen=True)
class CommandInterface:
    # joint_trajectory: trajectory_msgs/JointTrajectory (ros2_control joint_trajectory_controller);
    # forward_position: std_msgs/Float64MultiArray (ros2_control forward_command_controller)
    interface: Literal["joint_trajectory", "forward_position"]
    topic: str  # the driver's command topic (fully qualified: drivers live outside our namespaces)


@dataclass(frozen=True)
class ArmSpec:
    description: str
    base_link: str
    flange_link: str
    command: CommandInterface


@dataclass(frozen=True)
class MountSpec:
    """T_flange_hand: pose of the hand's root_link in the flange frame (metres, radians)."""

    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class HandSpec:
    description: str
    root_link: str
    fingertip_links: tuple[str, ...]
    command: CommandInterface
    palm_link: str | None = None  # default: root_link
    mount: MountSpec = field(default_factory=MountSpec)

    def __post_init__(self):
        if self.palm_link is None:
            object.__setattr__(self, "palm_link", self.root_link)

    @property
    def mount_xyz_m(self) -> tuple[float, float, float]:
        return self.mount.xyz

    @property
    def mount_rpy_rad(self) -> tuple[float, float, float]:
        return self.mount.rpy


@dataclass(frozen=True)
class RobotProfile:
    arm: ArmSpec
    hand: HandSpec
    name: str | None = None  # default: the file's stem
    home_rad: dict[str, float] = field(default_factory=dict)
    limits_override: dict[str, dict[str, float]] = field(default_factory=dict)
    source: Path | None = internal()  # the YAML it was read from (relative description paths resolve against it)

    def __post_init__(self):
        if self.name is None:
            object.__setattr__(self, "name", self.source.stem if self.source is not None else "robot")

    def hand_description_path(self) -> Path:
        """The hand's URDF file (its URI resolved): two profiles with the same hand share retargeting configs."""
        from dexstack.paths import resolve_uri

        return resolve_uri(self.hand.description, self.source.parent if self.source is not None else None)

    @property
    def command_topics(self) -> dict[str, str]:
        """The drivers' command topics by part: ``{"arm": ..., "hand": ...}``."""
        return {"arm": self.arm.command.topic, "hand": self.hand.command.topic}


def profile_path(name_or_path: str) -> Path:
    """``panda_allegro`` -> ``config/robots/panda_allegro.yaml``; a path to a YAML file is returned as is."""
    return resolve_data_file(name_or_path, "config/robots", what="robot profile", error=ProfileError,
                             known_as="profiles")


def load_profile(name_or_path: str) -> RobotProfile:
    path = profile_path(name_or_path)
    return load(RobotProfile, path, ProfileError, source=path)
