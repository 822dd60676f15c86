"""Observations: named fields, each a function of the step context, concatenated in the manifest's order.

A new field plugs in with :func:`register_field` (its builder and its expected size for a robot), without editing
the runtime or the node. Built-in fields (n = number of robot joints, description order):

==================  =================  ========================================================================
name                size               value
==================  =================  ========================================================================
joint_pos           n                  measured joint positions (rad)
joint_vel           n                  measured joint velocities (rad/s)
object_pos          3                  object position (m, robot base frame)
object_quat         4                  object orientation, quaternion xyzw (sign: w >= 0)
object_pose         7                  object_pos + object_quat
ref_joint_pos       n * len(steps)     reference joints at t + k * period for k in steps (relative: minus q)
ref_object_pose     7 * len(steps)     reference object pose at t + k * period (relative: position minus the
                                       measured one, quaternion q_ref * q_meas^-1)
last_action         action size        the previous raw network output (zeros after a reset)
phase               1                  t / reference duration, in [0, 1]
hand_keypoints      63                 21 human hand keypoints (m, base frame; teleop input)
==================  =================  ========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dexstack.policies.action_joints import resolve_action_joints
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import ObsField, PolicyManifest
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.robot.description import RobotDescription
from dexstack.transforms import quat_conjugate, quat_multiply


@dataclass
class RobotState:
    """What the robot and its sensors say now. Arrays in ``description.joints`` order."""

    q: np.ndarray
    dq: np.ndarray
    object_pose: np.ndarray | None = None  # (7,) xyz + quat xyzw, base frame
    hand_keypoints: np.ndarray | None = None  # (21, 3) base frame
    stamp_s: float = 0.0  # monotonic time of the newest input


@dataclass
class StepContext:
    state: RobotState
    t_s: float  # episode time (since the policy run started; kept across swaps)
    period_s: float  # control period
    reference: ReferenceTrajectory | None = None
    last_target: np.ndarray | None = None  # previous full joint target sent (description order)
    last_action: np.ndarray | None = None  # previous raw network output
    now_s: float = 0.0  # monotonic clock
    info: dict = field(default_factory=dict)


FieldFn = Callable[[StepContext, ObsField], np.ndarray]
SizeFn = Callable[[ObsField, RobotDescription, PolicyManifest], int]


@dataclass(frozen=True)
class FieldType:
    build: FieldFn
    size: SizeFn
    needs: frozenset[str] = frozenset()  # inputs: "object_pose", "reference", "reference_object", "hand_keypoints"


FIELDS: dict[str, FieldType] = {}


def register_field(name: str, build: FieldFn, size: SizeFn, needs: tuple[str, ...] = ()) -> None:
    FIELDS[name] = FieldType(build, size, frozenset(needs))


def _object(ctx: StepContext) -> np.ndarray:
    pose = ctx.state.object_pose
    if pose is None:
        raise PolicyError("the observation needs the object pose, and none was received")
    pose = np.asarray(pose, dtype=float).copy()
    if pose[6] < 0:
        pose[3:] = -pose[3:]
    return pose


def _window(ctx: StepContext, f: ObsField) -> np.ndarray:
    return ctx.t_s + np.asarray(f.steps, dtype=float) * ctx.period_s


def _ref(ctx: StepContext) -> ReferenceTrajectory:
    if ctx.reference is None:
        raise PolicyError("the observation needs a reference trajectory, and the policy has none")
    return ctx.reference


def _ref_joint_pos(ctx: StepContext, f: ObsField) -> np.ndarray:
    q = _ref(ctx).q_at(_window(ctx, f))
    if f.relative:
        q = q - ctx.state.q
    return q.reshape(-1)


def _ref_object_pose(ctx: StepContext, f: ObsField) -> np.ndarray:
    pose = _ref(ctx).object_pose_at(_window(ctx, f))
    if f.relative:
        meas = _object(ctx)
        pose[:, :3] -= meas[:3]
        pose[:, 3:] = quat_multiply(pose[:, 3:], quat_conjugate(meas[3:]))
    pose[:, 3:] *= np.where(pose[:, 6:7] < 0, -1.0, 1.0)
    return pose.reshape(-1)


def _n(_f, d: RobotDescription, _m) -> int:
    return len(d.joints)


def _action_size(_f, d: RobotDescription, m: PolicyManifest) -> int:
    return len(resolve_action_joints(m.action.joints, d))


register_field("joint_pos", lambda c, f: c.state.q, _n)
register_field("joint_vel", lambda c, f: c.state.dq, _n)
register_field("object_pos", lambda c, f: _object(c)[:3], lambda *_: 3, ("object_pose",))
register_field("object_quat", lambda c, f: _object(c)[3:], lambda *_: 4, ("object_pose",))
register_field("object_pose", lambda c, f: _object(c), lambda *_: 7, ("object_pose",))
register_field("ref_joint_pos", _ref_joint_pos, lambda f, d, m: len(d.joints) * len(f.steps), ("reference",))
register_field("ref_object_pose", _ref_object_pose, lambda f, d, m: 7 * len(f.steps), ("reference_object",))
register_field("last_action", lambda c, f: c.last_action, _action_size)
register_field("phase", lambda c, f: np.array([min(1.0, max(0.0, c.t_s / max(_ref(c).duration_s, 1e-9)))]),
               lambda *_: 1, ("reference",))
register_field("hand_keypoints", lambda c, f: _keypoints(c), lambda *_: 63, ("hand_keypoints",))


def _keypoints(ctx: StepContext) -> np.ndarray:
    if ctx.state.hand_keypoints is None:
        raise PolicyError("the observation needs hand keypoints, and none were received")
    return np.asarray(ctx.state.hand_keypoints, dtype=float).reshape(-1)


class ObservationBuilder:
    """The observation vector of a manifest, checked against the robot when built."""

    def __init__(self, manifest: PolicyManifest, description: RobotDescription):
        self.fields = manifest.observation
        self.needs: set[str] = set()
        for f in self.fields:
            if f.name not in FIELDS:
                raise PolicyError(f"observation field '{f.name}' is unknown (known: {sorted(FIELDS)})")
            ftype = FIELDS[f.name]
            if f.name.startswith("ref_") and not f.steps:
                raise PolicyError(f"observation field '{f.name}' needs 'steps' (future reference steps)")
            if f.relative and "object" in f.name:
                self.needs.add("object_pose")
            expected = ftype.size(f, description, manifest)
            if f.size != expected:
                raise PolicyError(f"observation field '{f.name}' declares size {f.size}, but on robot "
                                  f"'{description.profile.name}' it has {expected}")
            self.needs |= ftype.needs
        self.size = sum(f.size for f in self.fields)
        self._scale = [np.broadcast_to(np.asarray(f.scale), (f.size,)).astype(float) for f in self.fields]
        self._offset = [np.broadcast_to(np.asarray(f.offset), (f.size,)).astype(float) for f in self.fields]

    def build(self, ctx: StepContext) -> np.ndarray:
        parts = []
        for f, scale, offset in zip(self.fields, self._scale, self._offset):
            value = np.asarray(FIELDS[f.name].build(ctx, f), dtype=float).reshape(-1)
            if value.size != f.size:
                raise PolicyError(f"observation field '{f.name}' produced {value.size} values, expected {f.size}")
            parts.append((value - offset) * scale)
        obs = np.concatenate(parts) if parts else np.zeros(0)
        if not np.all(np.isfinite(obs)):
            raise PolicyError("observation has non-finite values")
        return obs
