"""Typed policy manifests: ``policies/<name>/policy.yaml``, parsed into frozen dataclasses.

A manifest says what a bundle is and what it was trained for::

    name: track_lift
    type: tracking                 # a key of dexstack.policies.registry (replay, tracking, network, ...)
    robot_profile: panda_allegro   # the profile it was trained for; the node refuses it on another robot
    control_rate_hz: 20.0
    reference: lift                # policies/references/lift.npz, or a path relative to the bundle
    checkpoint:
      file: model.pt
      format: rl_games             # torchscript | state_dict | rl_games
      hidden: [256, 128]           # state_dict / rl_games: the MLP's hidden layers (checked against the weights)
      activation: elu
    observation:                   # named fields, concatenated in this order
      - {name: joint_pos, size: 23}
      - {name: joint_vel, size: 23, scale: 0.1}
      - {name: ref_joint_pos, size: 69, steps: [1, 2, 4], relative: true}
    action:
      mode: residual               # absolute | delta | residual (around the reference)
      joints: all                  # all | arm | hand | [names]: whole parts, in this order
      scale: 0.1                   # raw output -> radians (scalar or one per joint)
      clip: 1.0                    # raw output clipped to [-clip, clip] first (null: no clip)
    params: {}                     # type-specific settings

Each observation field is ``(value - offset) * scale``. Sizes are declared so that a bundle is checked against
the robot (joint counts) and the network (input width) *before* it runs. Joint names are never listed for the
robot's sake: they come from the robot description; ``joints`` only says which parts the policy commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dexstack.config_loader import check_keys
from dexstack.policies.errors import PolicyError

MANIFEST_FILE = "policy.yaml"
ACTION_MODES = ("absolute", "delta", "residual")
CHECKPOINT_FORMATS = ("torchscript", "state_dict", "rl_games")
ACTIVATIONS = ("elu", "relu", "tanh", "selu", "gelu", "silu", "identity")


@dataclass(frozen=True)
class ObsField:
    name: str  # a key of dexstack.policies.observation.FIELDS
    size: int
    scale: tuple[float, ...] = (1.0,)  # one value, or one per element
    offset: tuple[float, ...] = (0.0,)
    steps: tuple[int, ...] = ()  # reference windows: future steps, in control periods (0 = now)
    relative: bool = False  # reference windows: minus the measured value


@dataclass(frozen=True)
class ActionSpec:
    mode: str = "absolute"
    joints: str | tuple[str, ...] = "all"
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)  # absolute mode: target = offset + scale * a
    clip: float | None = 1.0


@dataclass(frozen=True)
class CheckpointSpec:
    file: str
    format: str
    hidden: tuple[int, ...] = ()
    activation: str = "elu"


@dataclass(frozen=True)
class PolicyManifest:
    name: str
    type: str
    robot_profile: str
    control_rate_hz: float
    observation: tuple[ObsField, ...] = ()
    action: ActionSpec = field(default_factory=ActionSpec)
    checkpoint: CheckpointSpec | None = None
    reference: str | None = None
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None  # the bundle folder (relative files resolve against it)

    @property
    def observation_size(self) -> int:
        return sum(f.size for f in self.observation)

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def checkpoint_path(self) -> Path:
        if self.checkpoint is None:
            raise PolicyError(f"policy '{self.name}' has no checkpoint")
        path = Path(self.checkpoint.file)
        return path if path.is_absolute() or self.root is None else self.root / path

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (for the node's describe service and the CLI)."""
        return {
            "name": self.name, "type": self.type, "robot_profile": self.robot_profile,
            "control_rate_hz": self.control_rate_hz, "description": self.description,
            "reference": self.reference, "path": str(self.root) if self.root else None,
            "checkpoint": None if self.checkpoint is None else {
                "file": self.checkpoint.file, "format": self.checkpoint.format,
                "hidden": list(self.checkpoint.hidden), "activation": self.checkpoint.activation},
            "observation": [{"name": f.name, "size": f.size, **({"steps": list(f.steps)} if f.steps else {}),
                             **({"relative": True} if f.relative else {})} for f in self.observation],
            "observation_size": self.observation_size,
            "action": {"mode": self.action.mode, "joints": self.action.joints if isinstance(self.action.joints, str)
                       else list(self.action.joints), "clip": self.action.clip},
        }


# ---------------------------------------------------------------------------------------------------- parsing
def _floats(value: Any, where: str) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{where} must be a number or a list of numbers, got {value!r}") from exc
    if not out:
        raise PolicyError(f"{where} is empty")
    return out


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicyError(f"{where} must be a positive integer, got {value!r}")
    return value


def _check_keys(raw: dict, allowed: tuple[str, ...], where: str) -> None:
    check_keys(raw, allowed, where, error=PolicyError)


def _obs_field(raw: Any, i: int) -> ObsField:
    where = f"observation[{i}]"
    _check_keys(raw, ("name", "size", "scale", "offset", "steps", "relative"), where)
    if "name" not in raw or "size" not in raw:
        raise PolicyError(f"{where} needs 'name' and 'size'")
    steps = tuple(int(s) for s in raw.get("steps", ()))
    if any(s < 0 for s in steps):
        raise PolicyError(f"{where}.steps must be >= 0, got {list(steps)}")
    f = ObsField(name=str(raw["name"]), size=_positive_int(raw["size"], f"{where}.size"),
                 scale=_floats(raw.get("scale", 1.0), f"{where}.scale"),
                 offset=_floats(raw.get("offset", 0.0), f"{where}.offset"),
                 steps=steps, relative=bool(raw.get("relative", False)))
    for key in ("scale", "offset"):
        n = len(getattr(f, key))
        if n not in (1, f.size):
            raise PolicyError(f"{where}.{key} has {n} values: give 1 or size={f.size}")
    return f


def _action(raw: Any) -> ActionSpec:
    raw = raw or {}
    _check_keys(raw, ("mode", "joints", "scale", "offset", "clip"), "action")
    mode = str(raw.get("mode", "absolute"))
    if mode not in ACTION_MODES:
        raise PolicyError(f"action.mode '{mode}' is not one of {list(ACTION_MODES)}")
    joints = raw.get("joints", "all")
    joints = str(joints) if isinstance(joints, str) else tuple(str(j) for j in joints)
    clip = raw.get("clip", 1.0)
    return ActionSpec(mode=mode, joints=joints, scale=_floats(raw.get("scale", 1.0), "action.scale"),
                      offset=_floats(raw.get("offset", 0.0), "action.offset"),
                      clip=None if clip is None else float(clip))


def _checkpoint(raw: Any) -> CheckpointSpec | None:
    if raw is None:
        return None
    _check_keys(raw, ("file", "format", "hidden", "activation"), "checkpoint")
    if "file" not in raw or "format" not in raw:
        raise PolicyError("checkpoint needs 'file' and 'format'")
    fmt = str(raw["format"])
    if fmt not in CHECKPOINT_FORMATS:
        raise PolicyError(f"checkpoint.format '{fmt}' is not one of {list(CHECKPOINT_FORMATS)}")
    activation = str(raw.get("activation", "elu"))
    if activation not in ACTIVATIONS:
        raise PolicyError(f"checkpoint.activation '{activation}' is not one of {list(ACTIVATIONS)}")
    hidden = tuple(_positive_int(h, "checkpoint.hidden[]") for h in raw.get("hidden", ()))
    return CheckpointSpec(file=str(raw["file"]), format=fmt, hidden=hidden, activation=activation)


def parse_manifest(raw: Any, root: Path | None = None, where: str = "policy.yaml") -> PolicyManifest:
    """A manifest from its YAML mapping; :class:`PolicyError` naming the first problem otherwise."""
    try:
        _check_keys(raw, ("name", "type", "robot_profile", "control_rate_hz", "observation", "action",
                          "checkpoint", "reference", "description", "params"), "manifest")
        for key in ("type", "robot_profile", "control_rate_hz"):
            if key not in raw:
                raise PolicyError(f"missing '{key}'")
        rate = float(raw["control_rate_hz"])
        if not 0.5 <= rate <= 1000.0:
            raise PolicyError(f"control_rate_hz {rate} is outside [0.5, 1000]")
        observation = raw.get("observation") or []
        if not isinstance(observation, list):
            raise PolicyError("observation must be a list of fields")
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            raise PolicyError("params must be a mapping")
        return PolicyManifest(
            name=str(raw.get("name", root.name if root else "policy")),
            type=str(raw["type"]),
            robot_profile=str(raw["robot_profile"]),
            control_rate_hz=rate,
            observation=tuple(_obs_field(f, i) for i, f in enumerate(observation)),
            action=_action(raw.get("action")),
            checkpoint=_checkpoint(raw.get("checkpoint")),
            reference=None if raw.get("reference") in (None, "") else str(raw["reference"]),
            description=str(raw.get("description", "")),
            params=dict(params),
            root=root,
        )
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise PolicyError(f"{where}: malformed manifest ({exc})") from None


def load_manifest(bundle_dir: Path) -> PolicyManifest:
    path = Path(bundle_dir) / MANIFEST_FILE
    if not path.is_file():
        raise PolicyError(f"'{bundle_dir}' is not a policy bundle: no {MANIFEST_FILE} in it")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML ({exc})") from None
    return parse_manifest(raw, root=path.parent.resolve(), where=str(path))


def write_manifest(manifest_yaml: dict[str, Any], bundle_dir: Path) -> Path:
    """Write a manifest mapping (validated first) into ``bundle_dir``; used by training and tests."""
    bundle_dir = Path(bundle_dir)
    parse_manifest(manifest_yaml, root=bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    path = bundle_dir / MANIFEST_FILE
    path.write_text(yaml.safe_dump(manifest_yaml, sort_keys=False, default_flow_style=None, width=120))
    return path
