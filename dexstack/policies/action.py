"""Actions: raw network output -> joint position targets for the arm and/or the hand, within the joint limits.

``absolute``  target = offset + scale * a
``delta``     target = previous target + scale * a
``residual``  target = reference(t + period) + scale * a        (DexTrack-style tracking)

A policy commands whole parts (``joints: all | arm | hand`` or an explicit list covering whole parts, in the
policy's own order): arm trajectories must name every arm joint and hand commands carry every hand joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.policies.action_joints import resolve_action_joints as resolve_action_joints  # re-exported
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import ActionSpec
from dexstack.policies.observation import StepContext
from dexstack.robot.description import RobotDescription
from dexstack.safety.limits import description_command_limits


@dataclass(frozen=True)
class JointTargets:
    """Position targets to send this step (None: that part is not commanded). Description order within a part."""

    arm: np.ndarray | None
    hand: np.ndarray | None

    def full(self, fallback: np.ndarray, n_arm: int) -> np.ndarray:
        q = np.array(fallback, dtype=float)
        if self.arm is not None:
            q[:n_arm] = self.arm
        if self.hand is not None:
            q[n_arm:] = self.hand
        return q


def clip_raw_action(raw, clip: float | None):
    """The raw network output clipped to ``[-clip, clip]`` (``None``: unclipped), for numpy arrays and torch tensors
    alike: the one clip used by training (the task layer), the runtime (:class:`~dexstack.policies.networks.
    NetworkRunner`) and evaluation."""
    if clip is None:
        return raw
    return raw.clip(-clip, clip)


class ActionMapper:
    """Raw action -> joint targets, clipped into the safety gate's command limits (the description's limits shrunk
    by ``position_margin_rad``, :func:`dexstack.safety.limits.description_command_limits`; ``margin_rad`` overrides the
    configured margin), so that the gate passes the targets as they are."""

    def __init__(self, spec: ActionSpec, description: RobotDescription, margin_rad: float | None = None):
        self.spec = spec
        self.joints = resolve_action_joints(spec.joints, description)
        self.size = len(self.joints)
        index = {name: i for i, name in enumerate(description.joints)}
        self.index = np.array([index[j] for j in self.joints])
        self.n_arm = len(description.arm_joints)
        self.commands_arm = bool(np.any(self.index < self.n_arm))
        self.commands_hand = bool(np.any(self.index >= self.n_arm))
        for key in ("scale", "offset"):
            values = getattr(spec, key)
            if len(values) not in (1, self.size):
                raise PolicyError(f"action.{key} has {len(values)} values: give 1 or one per action ({self.size})")
        self.scale = np.broadcast_to(np.asarray(spec.scale, dtype=float), (self.size,))
        self.offset = np.broadcast_to(np.asarray(spec.offset, dtype=float), (self.size,))
        self.lower, self.upper = description_command_limits(description, margin_rad)

    def base(self, ctx: StepContext) -> np.ndarray:
        """What the raw action is added to (full joint vector)."""
        mode = self.spec.mode
        if mode == "absolute":
            q = np.array(ctx.state.q, dtype=float)
            q[self.index] = self.offset
            return q
        if mode == "delta":
            return np.array(ctx.last_target if ctx.last_target is not None else ctx.state.q, dtype=float)
        if ctx.reference is None:
            raise PolicyError("residual actions need a reference trajectory")
        return ctx.reference.q_at(ctx.t_s + ctx.period_s)

    def targets(self, raw: np.ndarray, ctx: StepContext) -> JointTargets:
        raw = np.asarray(raw, dtype=float).reshape(-1)
        if raw.size != self.size:
            raise PolicyError(f"policy produced {raw.size} actions, expected {self.size}")
        q = self.base(ctx)
        q[self.index] += self.scale * raw
        q = np.clip(q, self.lower, self.upper)  # the gate's command limits: nothing for it to clamp
        return JointTargets(arm=q[: self.n_arm] if self.commands_arm else None,
                            hand=q[self.n_arm:] if self.commands_hand else None)
