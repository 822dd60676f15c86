"""Robot profile: which descriptions make up the robot and how its parts are mounted and commanded.

A profile is ``config/robots/<name>.yaml``. It never repeats joint names or limits: those come from the URDFs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dexstack.paths import data_path


class ProfileError(ValueError):
    """A robot profile is missing, malformed, or disagrees with its descriptions."""


@dataclass(frozen=True)
class CommandInterface:
    interface: str  # "joint_trajectory" | "forward_position"
    topic: str


@dataclass(frozen=True)
class ArmSpec:
    description: str
    base_link: str
    flange_link: str
    command: CommandInterface


@dataclass(frozen=True)
class HandSpec:
    description: str
    root_link: str
    palm_link: str
    fingertip_links: tuple[str, ...]
    mount_xyz_m: tuple[float, float, float]
    mount_rpy_rad: tuple[float, float, float]
    command: CommandInterface


@dataclass(frozen=True)
class RobotProfile:
    name: str
    arm: ArmSpec
    hand: HandSpec
    home_rad: dict[str, float] = field(default_factory=dict)
    limits_override: dict[str, dict[str, float]] = field(default_factory=dict)
    source: Path | None = None  # the YAML it was read from (relative description paths resolve against it)


_INTERFACES = {"joint_trajectory", "forward_position"}


def profile_path(name_or_path: str) -> Path:
    """``panda_allegro`` -> ``config/robots/panda_allegro.yaml``; a path to a YAML file is returned as is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ProfileError(f"robot profile file '{name_or_path}' does not exist")
        return candidate.resolve()
    path = data_path("config", "robots", f"{name_or_path}.yaml")
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ProfileError(f"unknown robot profile '{name_or_path}': known profiles are {known}")
    return path


def load_profile(name_or_path: str) -> RobotProfile:
    path = profile_path(name_or_path)
    with path.open() as f:
        raw = yaml.safe_load(f)
    try:
        return _parse(raw, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise KeyError(f"missing '{where}.{key}'")
    return mapping[key]


def _command(raw: dict[str, Any], where: str) -> CommandInterface:
    cmd = _require(raw, "command", where)
    interface = str(_require(cmd, "interface", f"{where}.command"))
    if interface not in _INTERFACES:
        raise ValueError(f"{where}.command.interface '{interface}' is not one of {sorted(_INTERFACES)}")
    return CommandInterface(interface=interface, topic=str(_require(cmd, "topic", f"{where}.command")))


def _triple(value: Any, where: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"{where} must have 3 numbers, got {len(values)}")
    return values  # type: ignore[return-value]


def _parse(raw: dict[str, Any], path: Path) -> RobotProfile:
    arm_raw = _require(raw, "arm", "profile")
    hand_raw = _require(raw, "hand", "profile")
    mount = hand_raw.get("mount", {}) or {}
    arm = ArmSpec(
        description=str(_require(arm_raw, "description", "arm")),
        base_link=str(_require(arm_raw, "base_link", "arm")),
        flange_link=str(_require(arm_raw, "flange_link", "arm")),
        command=_command(arm_raw, "arm"),
    )
    hand = HandSpec(
        description=str(_require(hand_raw, "description", "hand")),
        root_link=str(_require(hand_raw, "root_link", "hand")),
        palm_link=str(hand_raw.get("palm_link", hand_raw["root_link"])),
        fingertip_links=tuple(str(s) for s in _require(hand_raw, "fingertip_links", "hand")),
        mount_xyz_m=_triple(mount.get("xyz", (0, 0, 0)), "hand.mount.xyz"),
        mount_rpy_rad=_triple(mount.get("rpy", (0, 0, 0)), "hand.mount.rpy"),
        command=_command(hand_raw, "hand"),
    )
    home = {str(k): float(v) for k, v in (raw.get("home_rad") or {}).items()}
    overrides = {str(k): {str(kk): float(vv) for kk, vv in v.items()} for k, v in (raw.get("limits_override") or {}).items()}
    return RobotProfile(
        name=str(raw.get("name", path.stem)),
        arm=arm,
        hand=hand,
        home_rad=home,
        limits_override=overrides,
        source=path,
    )
