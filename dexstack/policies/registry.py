"""Policy types and the one way to load a bundle: :func:`load_policy` (resolve, parse, build, validate).

A new policy type plugs in without touching the node::

    @register_policy("my_type")
    class MyPolicy(Policy):
        @classmethod
        def from_manifest(cls, manifest, description, device, reference): ...
        def act(self, ctx): ...   # -> JointTargets, or None to send nothing this step

(in a module imported by :mod:`dexstack.policies`, or by anything imported before the bundle is loaded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import torch

from dexstack.policies.action import ActionMapper, JointTargets
from dexstack.policies.bundles import load_bundle_manifest, reference_path
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.observation import ObservationBuilder, RobotState, StepContext
from dexstack.policies.reference import ReferenceTrajectory, load_reference
from dexstack.robot.description import RobotDescription


class Policy:
    """A loaded, validated policy. ``act`` runs on the control thread and must not block."""

    type_name: ClassVar[str] = ""
    uses_reference: ClassVar[bool] = False  # the type needs a reference trajectory

    def __init__(self, manifest: PolicyManifest, description: RobotDescription,
                 reference: ReferenceTrajectory | None = None):
        self.manifest = manifest
        self.description = description
        self.reference = reference
        self.observation = ObservationBuilder(manifest, description)
        self.action = ActionMapper(manifest.action, description)
        if "reference" in self.observation.needs or "reference_object" in self.observation.needs \
                or manifest.action.mode == "residual":
            self.require_reference()
        if "reference_object" in self.observation.needs and reference is not None and reference.object_pose is None:
            raise PolicyError(f"policy '{manifest.name}' observes the reference object pose, and reference "
                              f"'{reference.name}' has none")

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def needs(self) -> set[str]:
        """Inputs the node must provide: subsets of {object_pose, hand_keypoints, reference}."""
        return set(self.observation.needs)

    def require_reference(self) -> ReferenceTrajectory:
        if self.reference is None:
            raise PolicyError(f"policy '{self.manifest.name}' ({self.manifest.type}) needs a reference trajectory: "
                              f"set 'reference' in its manifest or the node's 'reference' parameter")
        return self.reference

    @classmethod
    def from_manifest(cls, manifest: PolicyManifest, description: RobotDescription, device: str,
                      reference: ReferenceTrajectory | None) -> Policy:
        return cls(manifest, description, reference)

    @classmethod
    def resolve_reference(cls, name: str, manifest: PolicyManifest,
                          description: RobotDescription) -> ReferenceTrajectory:
        """The reference named by the manifest or the node's ``reference`` parameter: a reference file (npz) by
        default; a type may take something else there (``grasp``: a grasp target) and make its reference."""
        return load_reference(reference_path(name, manifest.root), description)

    def reset(self, ctx: StepContext) -> None:
        """Called on the control thread when this policy takes over (start, swap, restart)."""

    def act(self, ctx: StepContext) -> JointTargets | None:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, str]:
        """Type-specific key/values for the node's /diagnostics (strings)."""
        return {}

    def dry_run(self, ctx: StepContext) -> None:
        """Validation before a bundle is accepted: one step on a synthetic state must give finite targets."""
        self.reset(ctx)
        out = self.act(ctx)
        if out is not None:
            for part, values, n in (("arm", out.arm, len(self.description.arm_joints)),
                                    ("hand", out.hand, len(self.description.hand_joints))):
                if values is not None and (values.shape != (n,) or not np.all(np.isfinite(values))):
                    raise PolicyError(f"policy '{self.name}' gives an invalid {part} target: {values}")
        self.reset(ctx)


P = TypeVar("P", bound=type[Policy])
_TYPES: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[P], P]:
    def decorate(cls: P) -> P:
        if name in _TYPES and _TYPES[name] is not cls:
            raise ValueError(f"policy type '{name}' is already registered by {_TYPES[name].__qualname__}")
        cls.type_name = name
        _TYPES[name] = cls
        return cls
    return decorate


def policy_types() -> dict[str, type[Policy]]:
    return dict(_TYPES)


def check_device(device: str) -> str:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise PolicyError(f"device '{device}' is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PolicyError(f"device '{device}' is not available here (torch {torch.__version__}, no CUDA)")
    return device


def synthetic_context(policy: Policy) -> StepContext:
    """A plausible first step: robot at home, at rest, the object where the reference starts (or on the table)."""
    d = policy.description
    q = d.home()
    object_pose = np.array([0.5, 0.0, 0.025, 0.0, 0.0, 0.0, 1.0])
    if policy.reference is not None:
        q = policy.reference.q_at(0.0)
        if policy.reference.object_pose is not None:
            object_pose = policy.reference.object_pose_at(0.0)
    state = RobotState(q=q, dq=np.zeros_like(q), object_pose=object_pose, hand_keypoints=None)
    return StepContext(state=state, t_s=0.0, period_s=policy.manifest.period_s, reference=policy.reference,
                       last_target=q.copy())


def build_policy(manifest: PolicyManifest, description: RobotDescription, device: str = "cpu",
                 reference: str | ReferenceTrajectory | None = None) -> Policy:
    """Build and validate the policy of ``manifest`` for ``description``. ``reference`` overrides the manifest's."""
    if manifest.robot_profile != description.profile.name:
        raise PolicyError(f"policy '{manifest.name}' was made for robot profile '{manifest.robot_profile}', "
                          f"this robot is '{description.profile.name}'")
    if manifest.type not in _TYPES:
        raise PolicyError(f"policy '{manifest.name}' has type '{manifest.type}', which is not registered "
                          f"(known: {sorted(_TYPES)})")
    check_device(device)
    cls = _TYPES[manifest.type]
    ref = reference if isinstance(reference, ReferenceTrajectory) else None
    name = reference if isinstance(reference, str) and reference else manifest.reference
    if ref is None and name:
        ref = cls.resolve_reference(name, manifest, description)
    if ref is not None and ref.robot_profile and ref.robot_profile != description.profile.name:
        raise PolicyError(f"reference '{ref.name}' was made for robot '{ref.robot_profile}', this robot is "
                          f"'{description.profile.name}'")
    if cls.uses_reference and ref is None:
        raise PolicyError(f"policy '{manifest.name}' ({manifest.type}) needs a reference trajectory: set 'reference' "
                          f"in its manifest or the node's 'reference' parameter")
    policy = cls.from_manifest(manifest, description, device, ref)
    policy.dry_run(synthetic_context(policy))
    return policy


def load_policy(name_or_path: str | Path, description: RobotDescription, device: str = "cpu",
                reference: str | ReferenceTrajectory | None = None, params: dict | None = None) -> Policy:
    """Resolve a bundle (name or folder), parse its manifest, load its weights safely, validate it. ``params``
    override entries of the manifest's ``params`` (e.g. the node's vgps_* parameters)."""
    manifest = load_bundle_manifest(str(name_or_path))
    if params:
        manifest = dataclasses.replace(manifest, params={**manifest.params, **params})
    try:
        return build_policy(manifest, description, device, reference)
    except PolicyError as exc:
        raise PolicyError(f"policy '{manifest.name}' ({manifest.root}): {exc}") from None
