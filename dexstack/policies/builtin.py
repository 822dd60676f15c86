"""Built-in policy types: ``replay`` (open loop), ``network`` (any checkpoint) and ``tracking`` (DexTrack-style)."""

from __future__ import annotations

import numpy as np

from dexstack.policies.action import JointTargets
from dexstack.policies.anchoring import AnchorLimits, anchor_reference
from dexstack.policies.checkpoints import load_network
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.networks import NetworkRunner
from dexstack.policies.observation import StepContext
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.registry import Policy, register_policy
from dexstack.robot.description import RobotDescription


@register_policy("replay")
class ReplayPolicy(Policy):
    """Plays the reference: each step targets the reference at the end of the step (t + period). No weights."""

    uses_reference = True

    def __init__(self, manifest: PolicyManifest, description: RobotDescription,
                 reference: ReferenceTrajectory | None = None):
        if manifest.action.mode != "absolute":
            raise PolicyError("replay policies send absolute targets: set action.mode: absolute (or leave it out)")
        super().__init__(manifest, description, reference)
        self.require_reference()

    def act(self, ctx: StepContext) -> JointTargets:
        q = np.clip(self.reference.q_at(ctx.t_s + ctx.period_s), self.action.lower, self.action.upper)
        n = self.action.n_arm
        return JointTargets(arm=q[:n] if self.action.commands_arm else None,
                            hand=q[n:] if self.action.commands_hand else None)


@register_policy("network")
class NetworkPolicy(Policy):
    """observation -> network -> action layout. The checkpoint format is the manifest's (see checkpoints.py)."""

    def __init__(self, manifest: PolicyManifest, description: RobotDescription, reference: ReferenceTrajectory | None,
                 network: NetworkRunner):
        super().__init__(manifest, description, reference)
        self.network = network
        self._last_action = np.zeros(self.action.size)

    @classmethod
    def from_manifest(cls, manifest, description, device, reference):
        if manifest.checkpoint is None:
            raise PolicyError(f"a '{manifest.type}' policy needs a checkpoint")
        probe = Policy(manifest, description, reference)  # checks the layouts before reading any weights
        network = load_network(manifest.checkpoint_path(), manifest.checkpoint, probe.observation.size,
                               probe.action.size, manifest.action.clip, device)
        return cls(manifest, description, reference, network)

    def reset(self, ctx: StepContext) -> None:
        self._last_action = np.zeros(self.action.size)

    def act(self, ctx: StepContext) -> JointTargets:
        ctx.last_action = self._last_action
        raw = self.network(self.observation.build(ctx))
        if not np.all(np.isfinite(raw)):
            raise PolicyError(f"policy '{self.name}' produced non-finite actions")
        self._last_action = raw
        return self.action.targets(raw, ctx)


@register_policy("tracking")
class TrackingPolicy(NetworkPolicy):
    """DexTrack-style tracking: residual joint targets around a kinematic hand-object reference.

    Start: the reference is anchored to the object's pose at the first step with one
    (:func:`~dexstack.policies.anchoring.anchor_reference`; beyond :attr:`anchor_limits` the policy sends nothing
    and reports why, until restarted). End: after the reference's last sample the policy keeps sending the last
    targets it sent (the arm where it is, the hand closed on the object), so a grasp is held until the policy is
    restarted, swapped or disabled.
    """

    uses_reference = True
    anchor_limits = AnchorLimits()

    def __init__(self, manifest, description, reference, network):
        if manifest.action.mode != "residual":
            raise PolicyError("tracking policies output residuals around the reference: set action.mode: residual")
        super().__init__(manifest, description, reference, network)
        self.original_reference = reference
        self._anchored_reference: ReferenceTrajectory | None = None
        self._anchored = False
        self._refusal: str | None = None
        self._hold: JointTargets | None = None
        self.status: dict[str, str] = {}

    def reset(self, ctx: StepContext) -> None:
        super().reset(ctx)
        if self.reference is not self._anchored_reference:  # set from outside (evaluate(), a new reference)
            self.original_reference = self.reference
        self.reference = self._anchored_reference = self.original_reference
        self._anchored, self._refusal, self._hold = False, None, None
        self.status = {"phase": "starting"}
        self._anchor(ctx)

    def _anchor(self, ctx: StepContext) -> None:
        """Anchor to the object pose of ``ctx`` if there is one (else at the first step that has one)."""
        if self._anchored or ctx.state.object_pose is None or self.reference is None \
                or self.reference.object_pose is None:
            return
        self._anchored = True
        try:
            result = anchor_reference(self.original_reference, ctx.state.object_pose, self.description,
                                      self.anchor_limits)
        except PolicyError as exc:
            self._refusal = str(exc)
            self.status = {"phase": "refused", "reason": self._refusal}
            return
        self.reference = self._anchored_reference = ctx.reference = result.reference
        self.status = {"phase": "tracking", "anchor_shift_m": " ".join(f"{v:.4f}" for v in result.shift_m),
                       "anchor_offset_m": " ".join(f"{v:.4f}" for v in result.measured_offset_m)}

    def act(self, ctx: StepContext) -> JointTargets:
        self._anchor(ctx)
        if self._refusal is not None:
            raise PolicyError(self._refusal)
        ctx.reference = self.reference
        if self.reference is not None and ctx.t_s >= self.reference.duration_s:
            if self._hold is None:  # the reference is over: keep the last targets (and the grasp)
                n = self.action.n_arm
                last = np.asarray(ctx.last_target, dtype=float)
                self._hold = JointTargets(arm=last[:n].copy() if self.action.commands_arm else None,
                                          hand=last[n:].copy() if self.action.commands_hand else None)
                self.status = {**self.status, "phase": "holding the reference's end"}
            return self._hold
        return super().act(ctx)
