"""Policy runtime (pure core, no rclpy): bundles (manifest + weights), safe checkpoint loaders, a registry of policy
types, observation/action layouts, reference trajectories, and the runtime that swaps policies at step boundaries.

``load_policy(name, description)`` is the one entry point; the ``policy`` node only wires ROS topics to it.
"""

from dexstack.policies import builtin as _builtin  # noqa: F401  (registers replay, network, tracking)
from dexstack.policies import retarget_policy as _retarget  # noqa: F401  (registers retarget)
from dexstack.policies import vgps as _vgps  # noqa: F401  (registers vgps)
from dexstack.policies.action import JointTargets
from dexstack.policies.bundles import bundle_dir, list_bundles, list_references, reference_path
from dexstack.policies.errors import PolicyError
from dexstack.policies.grasp import policy as _grasp  # noqa: F401  (registers grasp)
from dexstack.policies.manifest import PolicyManifest, load_manifest, parse_manifest
from dexstack.policies.observation import RobotState, StepContext, register_field
from dexstack.policies.reference import ReferenceTrajectory, load_reference, save_reference
from dexstack.policies.registry import Policy, build_policy, load_policy, policy_types, register_policy
from dexstack.policies.runtime import InputCache, PolicyRuntime

__all__ = [
    "InputCache", "JointTargets", "Policy", "PolicyError", "PolicyManifest", "PolicyRuntime", "ReferenceTrajectory",
    "RobotState", "StepContext", "build_policy", "bundle_dir", "list_bundles", "list_references", "load_manifest",
    "load_policy", "load_reference", "parse_manifest", "policy_types", "reference_path", "register_field",
    "register_policy", "save_reference",
]
