"""Built-in policy types: ``replay`` (open loop), ``network`` (any checkpoint) and ``tracking`` (DexTrack-style)."""

from __future__ import annotations

import numpy as np

from dexstack.policies.action import JointTargets
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
    """DexTrack-style tracking: residual joint targets around a kinematic hand-object reference."""

    uses_reference = True

    def __init__(self, manifest, description, reference, network):
        if manifest.action.mode != "residual":
            raise PolicyError("tracking policies output residuals around the reference: set action.mode: residual")
        super().__init__(manifest, description, reference, network)
