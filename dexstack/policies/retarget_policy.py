"""``retarget``: the teleoperation mapping (hand keypoints -> retargeting + arm IK) as a policy.

It runs :class:`dexstack.teleop.TeleopController` (``dexstack/retarget/`` underneath) with ``auto_engage``: the
robot follows the human hand from where both are when the hand is first seen, and sends nothing (the safety monitor
holds) while no hand is seen. Observation: ``hand_keypoints`` (63 = 21 x 3, MANO order, robot base frame, from
``/dexstack/hand_keypoints``). ``params``: ``retarget_config``, ``method``, ``position_scale``,
``hand_lost_timeout_s`` (TeleopConfig fields). The teleop packages are imported when such a bundle is loaded, so a
robot without them can still run every other policy type.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dexstack.policies.action import JointTargets
from dexstack.policies.errors import PolicyError
from dexstack.policies.observation import StepContext
from dexstack.policies.registry import Policy, register_policy


@register_policy("retarget")
class RetargetPolicy(Policy):
    def __init__(self, manifest, description, reference, controller):
        super().__init__(manifest, description, reference)
        if [f.name for f in manifest.observation] != ["hand_keypoints"]:
            raise PolicyError("retarget policies observe exactly one field: hand_keypoints (size 63)")
        if manifest.action.mode != "absolute" or self.action.size != len(description.joints):
            raise PolicyError("retarget policies send absolute targets for all joints (action: {mode: absolute, "
                              "joints: all})")
        self.controller = controller

    @classmethod
    def from_manifest(cls, manifest, description, device, reference):
        try:
            from dexstack.teleop import TeleopConfig, TeleopController  # noqa: PLC0415 (optional part)
        except ImportError as exc:
            raise PolicyError(f"retarget policies need dexstack.teleop / dexstack.retarget: {exc}") from None
        fields = {f.name for f in dataclasses.fields(TeleopConfig)}
        unknown = set(manifest.params) - fields
        if unknown:
            raise PolicyError(f"params {sorted(unknown)} are not TeleopConfig fields ({sorted(fields)})")
        config = TeleopConfig(**{**manifest.params, "auto_engage": True})
        try:
            controller = TeleopController(description, config)
        except (FileNotFoundError, ValueError) as exc:
            raise PolicyError(f"cannot build the retargeting controller: {exc}") from None
        return cls(manifest, description, reference, controller)

    def reset(self, ctx: StepContext) -> None:
        self.controller.disengage("policy (re)started")

    def act(self, ctx: StepContext) -> JointTargets | None:
        keypoints = ctx.state.hand_keypoints
        if keypoints is None:
            self.controller.check_hand_lost(ctx.now_s)
            return None
        from dexstack.teleop.controller import KeypointError  # noqa: PLC0415

        try:
            command = self.controller.step(np.asarray(keypoints, dtype=float).reshape(21, 3), ctx.state.q, ctx.now_s)
        except KeypointError:
            return None  # not a hand: hold (the node counts it)
        if command is None:
            return None
        q = np.clip(np.concatenate([command.arm_rad, command.hand_rad]), self.action.lower, self.action.upper)
        n = self.action.n_arm
        return JointTargets(arm=q[:n], hand=q[n:])
