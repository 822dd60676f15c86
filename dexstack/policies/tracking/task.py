"""The tracking task for N environments at once, as torch tensor code: observations, actions, rewards, resets,
randomisation and success. Simulator-agnostic: every physics backend (MuJoCo C in worker processes, MuJoCo Warp,
Isaac Gym) and the evaluation share it, on whatever device the tensors live.

The layouts are not redefined here: observation fields, their order, sizes, scales, offsets and reference windows
come from the bundle manifest (:mod:`dexstack.policies.manifest`), with the same maths as the runtime's
:class:`~dexstack.policies.observation.ObservationBuilder` and :class:`~dexstack.policies.action.ActionMapper`
(a unit test checks equality field by field), and the raw action is clipped by the runtime's own
:func:`~dexstack.policies.action.clip_raw_action`.

Shapes: N environments, n robot joints (description order), K reference window steps, R references.
Quaternions are xyzw. Times are episode seconds on each environment's reference timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dexstack.policies.action import clip_raw_action, resolve_action_joints
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.robot.description import RobotDescription
from dexstack.safety.limits import description_command_limits

# End of the approach phase as a fraction of a reference's duration (references.PHASES_S: 3 s of 8): episodes start
# there, robot at the reference and object at rest (the free-space approach teaches nothing).
APPROACH_FRACTION = 3.0 / 8.0


@dataclass(frozen=True)
class SuccessCriteria:
    """A reference is tracked when the object stays near its reference all along and ends where it should."""

    max_position_error_m: float = 0.04
    final_position_error_m: float = 0.03
    final_rotation_error_rad: float = 0.4


@dataclass(frozen=True)
class TaskConfig:
    w_object_pos: float = 1.0
    w_object_rot: float = 0.5
    w_joints: float = 0.3
    k_object_pos: float = 40.0  # 1/m
    k_object_rot: float = 3.0  # 1/rad
    k_joints: float = 2.0  # 1/rad (mean absolute error)
    w_action: float = 0.01
    terminate_position_error_m: float = 0.08
    success: SuccessCriteria = field(default_factory=SuccessCriteria)


@dataclass(frozen=True)
class Randomization:
    """Per-episode physics and per-step observation randomisation (all off: :meth:`none`)."""

    friction_scale: tuple[float, float] = (0.7, 1.3)
    mass_scale: tuple[float, float] = (0.7, 1.5)
    joint_pos_noise_rad: float = 0.005
    joint_vel_noise_rad_s: float = 0.05
    object_pos_noise_m: float = 0.003
    object_rot_noise_rad: float = 0.02
    # the object's start pose around the reference's (uniform, per episode): a policy trained on one demo must not
    # memorise one start (Human2Sim2Robot); off by default
    object_start_xy_m: float = 0.0
    object_start_yaw_rad: float = 0.0

    def __post_init__(self) -> None:
        for name in ("friction_scale", "mass_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"Randomization.{name} must be 0 < low <= high, got {(lo, hi)}")
        for name in ("joint_pos_noise_rad", "joint_vel_noise_rad_s", "object_pos_noise_m", "object_rot_noise_rad",
                     "object_start_xy_m", "object_start_yaw_rad"):
            if getattr(self, name) < 0:
                raise ValueError(f"Randomization.{name} must be >= 0")

    @staticmethod
    def none() -> Randomization:
        return Randomization((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------ quaternion maths
def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of xyzw quaternions (broadcasting)."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], dim=-1)


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([-q[..., :3], q[..., 3:]], dim=-1)


def positive_w(q: torch.Tensor) -> torch.Tensor:
    """The same rotation with w >= 0 (the observation's sign convention)."""
    return torch.where(q[..., 3:4] < 0, -q, q)


def quat_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rotation angle (rad) between xyzw quaternions: 2 acos(|<a, b>| / (|a| |b|))."""
    dot = (a * b).sum(-1).abs() / (a.norm(dim=-1) * b.norm(dim=-1))
    return 2.0 * torch.arccos(dot.clamp(max=1.0))


# ------------------------------------------------------------------------------------------ references
class ReferenceBank:
    """R references resampled on one uniform grid (their own 50 Hz grid: exact), padded with their last sample,
    so that interpolation for N environments on N different references is one gather."""

    def __init__(self, references: list[ReferenceTrajectory], rate_hz: float = 50.0, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        if not references:
            raise ValueError("the reference bank needs at least one reference")
        if any(r.object_pose is None for r in references):
            raise PolicyError("tracking references need object poses")
        self.references = references
        self.dt_s = 1.0 / rate_hz
        lengths = [int(np.floor(r.duration_s * rate_hz + 1e-6)) + 1 for r in references]
        T = max(max(lengths), 2)
        q = np.zeros((len(references), T, references[0].q_rad.shape[1]))
        pose = np.zeros((len(references), T, 7))
        for i, (ref, n) in enumerate(zip(references, lengths)):
            grid = np.minimum(np.arange(T) * self.dt_s, ref.duration_s)
            q[i], pose[i] = ref.q_at(grid), ref.object_pose_at(grid)
            q[i, n:], pose[i, n:] = q[i, n - 1], pose[i, n - 1]
        self.q = torch.as_tensor(q, dtype=dtype, device=device)
        self.pose = torch.as_tensor(pose, dtype=dtype, device=device)
        self.duration_s = torch.as_tensor([r.duration_s for r in references], dtype=dtype, device=device)
        self.names = [r.name for r in references]
        self.kinds = [r.kind for r in references]

    def __len__(self) -> int:
        return len(self.references)

    def _interp(self, values: torch.Tensor, ref: torch.Tensor, t_s: torch.Tensor) -> torch.Tensor:
        """values (R, T, m); ref (N,) long; t_s (N, K) -> (N, K, m), linear, held before 0 and after the end."""
        t = torch.minimum(t_s.clamp(min=0.0), self.duration_s[ref][:, None])
        u = t / self.dt_s
        k = u.floor().long().clamp(0, values.shape[1] - 2)
        alpha = (u - k).unsqueeze(-1)
        rows = ref[:, None].expand_as(k)
        v0, v1 = values[rows, k], values[rows, k + 1]
        return v0 + alpha * (v1 - v0)

    def q_at(self, ref: torch.Tensor, t_s: torch.Tensor) -> torch.Tensor:
        return self._interp(self.q, ref, t_s)

    def object_pose_at(self, ref: torch.Tensor, t_s: torch.Tensor) -> torch.Tensor:
        pose = self._interp(self.pose, ref, t_s)
        return torch.cat([pose[..., :3], pose[..., 3:] / pose[..., 3:].norm(dim=-1, keepdim=True)], dim=-1)

    def start_time_s(self, ref: torch.Tensor) -> torch.Tensor:
        return self.duration_s[ref] * APPROACH_FRACTION


@dataclass
class TaskState:
    """What the task layer keeps per environment (tensors of N rows)."""

    ref: torch.Tensor  # (N,) long: reference index
    t_s: torch.Tensor  # (N,) episode time
    last_action: torch.Tensor  # (N, A) previous raw (clipped) action
    last_target: torch.Tensor  # (N, n) previous full joint target
    max_pos_err: torch.Tensor  # (N,)
    last_pos_err: torch.Tensor  # (N,)
    last_rot_err: torch.Tensor  # (N,)


@dataclass
class Measured:
    """Robot and object state for N environments: joint positions/velocities and object pose xyzw."""

    q: torch.Tensor  # (N, n)
    dq: torch.Tensor  # (N, n)
    object_pose: torch.Tensor  # (N, 7)


class TrackingTask:
    """Observation, action, reward, termination, success and reset logic of the tracking task for N envs."""

    # observation field name -> batched builder (task, state, measured, window, relative); subclasses extend it
    FIELDS: dict = {}

    def __init__(self, manifest: PolicyManifest, description: RobotDescription, references: list[ReferenceTrajectory],
                 config: TaskConfig | None = None, randomization: Randomization | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.manifest, self.description = manifest, description
        self.config = config or TaskConfig()
        self.randomization = randomization if randomization is not None else Randomization()
        self.device, self.dtype = torch.device(device), dtype
        self.bank = ReferenceBank(references, device=device, dtype=dtype)
        self.period_s = manifest.period_s
        self.n_joints = len(description.joints)
        self.n_arm = len(description.arm_joints)
        lower, upper = description_command_limits(description)  # the safety gate's: targets pass it unclamped
        self.lower = self._t(lower)
        self.upper = self._t(upper)
        spec = manifest.action
        action_joints = resolve_action_joints(spec.joints, description)
        index = {name: i for i, name in enumerate(description.joints)}
        self.action_index = torch.as_tensor([index[j] for j in action_joints], device=self.device)
        self.action_size = len(action_joints)
        for key in ("scale", "offset"):
            if len(getattr(spec, key)) not in (1, self.action_size):
                raise PolicyError(f"action.{key} has {len(getattr(spec, key))} values: give 1 or {self.action_size}")
        self.action_scale = self._t(np.broadcast_to(spec.scale, (self.action_size,)))
        self.action_offset = self._t(np.broadcast_to(spec.offset, (self.action_size,)))
        self.commands_arm = bool((self.action_index < self.n_arm).any())
        self.commands_hand = bool((self.action_index >= self.n_arm).any())
        self._fields = []
        for f in manifest.observation:
            if f.name not in self.FIELDS:
                raise PolicyError(f"observation field '{f.name}' has no batched implementation "
                                  f"(batched: {sorted(self.FIELDS)})")
            self._fields.append((f, self._t(np.broadcast_to(f.scale, (f.size,))),
                                 self._t(np.broadcast_to(f.offset, (f.size,))),
                                 self._t(np.asarray(f.steps, dtype=float)) * self.period_s))
        self.obs_size = sum(f.size for f in manifest.observation)

    def _t(self, x) -> torch.Tensor:
        return torch.as_tensor(np.array(x, dtype=float), dtype=self.dtype, device=self.device)

    # -------------------------------------------------------------------------------- resets and randomisation
    def new_state(self, n_envs: int) -> TaskState:
        z = torch.zeros(n_envs, dtype=self.dtype, device=self.device)
        return TaskState(ref=torch.zeros(n_envs, dtype=torch.long, device=self.device), t_s=z.clone(),
                         last_action=torch.zeros(n_envs, self.action_size, dtype=self.dtype, device=self.device),
                         last_target=torch.zeros(n_envs, self.n_joints, dtype=self.dtype, device=self.device),
                         max_pos_err=z.clone(), last_pos_err=z.clone(), last_rot_err=z.clone())

    def reset(self, state: TaskState, env_ids: torch.Tensor, generator: torch.Generator | None,
              ref: torch.Tensor | None = None, t_s: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Start episodes in ``env_ids`` (random references unless ``ref``; at the approach's end unless ``t_s``).
        Returns what the physics needs: robot ``q`` (at rest), object ``object_pose`` (the reference's start) and
        per-episode ``friction_scale`` / ``mass_scale``."""
        k = env_ids.numel()
        if ref is None:
            ref = torch.randint(len(self.bank), (k,), generator=generator, device=self.device)
        t0 = self.bank.start_time_s(ref) if t_s is None else t_s
        q0 = self.bank.q_at(ref, t0[:, None])[:, 0]
        obj0 = self.bank.object_pose_at(ref, torch.zeros_like(t0)[:, None])[:, 0]
        state.ref[env_ids], state.t_s[env_ids] = ref, t0
        state.last_action[env_ids] = 0.0
        state.last_target[env_ids] = q0
        state.max_pos_err[env_ids] = 0.0
        state.last_pos_err[env_ids] = 0.0
        state.last_rot_err[env_ids] = 0.0
        r = self.randomization

        def uniform(lo_hi):
            u = torch.rand(k, generator=generator, device=self.device, dtype=self.dtype)
            return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u

        if r.object_start_xy_m > 0 or r.object_start_yaw_rad > 0:
            obj0 = obj0.clone()
            for axis in (0, 1):
                obj0[:, axis] += uniform((-r.object_start_xy_m, r.object_start_xy_m))
            half = 0.5 * uniform((-r.object_start_yaw_rad, r.object_start_yaw_rad))
            z = torch.zeros_like(half)
            obj0[:, 3:] = quat_mul(torch.stack([z, z, torch.sin(half), torch.cos(half)], dim=-1), obj0[:, 3:])
        return {"q": q0, "object_pose": obj0, "friction_scale": uniform(r.friction_scale),
                "mass_scale": uniform(r.mass_scale)}

    def noisy(self, m: Measured, generator: torch.Generator | None) -> Measured:
        """Sensor noise on the observed state (the reward uses the true one)."""
        r = self.randomization

        def noise(shape, sigma):
            return sigma * torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)

        q = m.q + noise(m.q.shape, r.joint_pos_noise_rad) if r.joint_pos_noise_rad else m.q
        dq = m.dq + noise(m.dq.shape, r.joint_vel_noise_rad_s) if r.joint_vel_noise_rad_s else m.dq
        pos, quat = m.object_pose[:, :3], m.object_pose[:, 3:]
        if r.object_pos_noise_m:
            pos = pos + noise(pos.shape, r.object_pos_noise_m)
        if r.object_rot_noise_rad:
            quat = quat + noise(quat.shape, r.object_rot_noise_rad / 2)
            quat = quat / quat.norm(dim=-1, keepdim=True)
        return Measured(q, dq, torch.cat([pos, quat], dim=-1))

    # -------------------------------------------------------------------------------- observation
    def observe(self, state: TaskState, m: Measured) -> torch.Tensor:
        """(N, obs_size): the manifest's fields in order, ``(value - offset) * scale``."""
        parts = [(self.FIELDS[f.name](self, state, m, window, f.relative) - offset) * scale
                 for f, scale, offset, window in self._fields]
        return torch.cat(parts, dim=-1)

    # -------------------------------------------------------------------------------- action
    def targets(self, state: TaskState, m: Measured, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw network output -> (clipped raw action (N, A), full joint targets (N, n) within the joint limits)."""
        raw = clip_raw_action(raw.to(self.dtype), self.manifest.action.clip)
        mode = self.manifest.action.mode
        if mode == "absolute":
            base = m.q.clone()
            base[:, self.action_index] = self.action_offset
        elif mode == "delta":
            base = state.last_target.clone()
        else:
            base = self.bank.q_at(state.ref, (state.t_s + self.period_s)[:, None])[:, 0]
        base[:, self.action_index] += self.action_scale * raw
        return raw, torch.minimum(torch.maximum(base, self.lower), self.upper)

    # -------------------------------------------------------------------------------- reward and success
    def advance(self, state: TaskState, true: Measured, raw: torch.Tensor,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """After one control period: time, reward, failure and timeout. Returns (reward, failed, timeout)."""
        c = self.config
        state.t_s = state.t_s + self.period_s
        ref_pose = self.bank.object_pose_at(state.ref, state.t_s[:, None])[:, 0]
        pos_err = (true.object_pose[:, :3] - ref_pose[:, :3]).norm(dim=-1)
        rot_err = quat_angle(true.object_pose[:, 3:], ref_pose[:, 3:])
        state.max_pos_err = torch.maximum(state.max_pos_err, pos_err)
        state.last_pos_err, state.last_rot_err = pos_err, rot_err
        q_err = (true.q - self.bank.q_at(state.ref, state.t_s[:, None])[:, 0]).abs().mean(-1)
        reward = (c.w_object_pos * torch.exp(-c.k_object_pos * pos_err)
                  + c.w_object_rot * torch.exp(-c.k_object_rot * rot_err)
                  + c.w_joints * torch.exp(-c.k_joints * q_err) - c.w_action * (raw ** 2).mean(-1))
        state.last_action = raw
        state.last_target = targets
        failed = pos_err > c.terminate_position_error_m
        timeout = state.t_s >= self.bank.duration_s[state.ref] - 1e-6
        return reward, failed, timeout

    def success(self, state: TaskState) -> torch.Tensor:
        s = self.config.success
        return ((state.max_pos_err <= s.max_position_error_m) & (state.last_pos_err <= s.final_position_error_m)
                & (state.last_rot_err <= s.final_rotation_error_rad))


# ------------------------------------------------------------------------------------------ observation fields
def _object(m: Measured) -> torch.Tensor:
    return torch.cat([m.object_pose[:, :3], positive_w(m.object_pose[:, 3:])], dim=-1)


def _ref_joint_pos(task: TrackingTask, s: TaskState, m: Measured, window: torch.Tensor, relative: bool):
    q = task.bank.q_at(s.ref, s.t_s[:, None] + window)
    if relative:
        q = q - m.q[:, None]
    return q.reshape(q.shape[0], -1)


def _ref_object_pose(task: TrackingTask, s: TaskState, m: Measured, window: torch.Tensor, relative: bool):
    pose = task.bank.object_pose_at(s.ref, s.t_s[:, None] + window)
    pos, quat = pose[..., :3], pose[..., 3:]
    if relative:
        meas = _object(m)
        pos = pos - meas[:, None, :3]
        quat = quat_mul(quat, quat_conj(meas[:, None, 3:]))
    pose = torch.cat([pos, positive_w(quat)], dim=-1)
    return pose.reshape(pose.shape[0], -1)


def _phase(task: TrackingTask, s: TaskState, m: Measured, window, relative):
    return (s.t_s / task.bank.duration_s[s.ref].clamp(min=1e-9)).clamp(0.0, 1.0)[:, None]


# Batched versions of dexstack.policies.observation's built-in fields (same names, same maths).
_FIELDS = {
    "joint_pos": lambda task, s, m, w, rel: m.q,
    "joint_vel": lambda task, s, m, w, rel: m.dq,
    "object_pos": lambda task, s, m, w, rel: m.object_pose[:, :3],
    "object_quat": lambda task, s, m, w, rel: positive_w(m.object_pose[:, 3:]),
    "object_pose": lambda task, s, m, w, rel: _object(m),
    "ref_joint_pos": _ref_joint_pos,
    "ref_object_pose": _ref_object_pose,
    "last_action": lambda task, s, m, w, rel: s.last_action,
    "phase": _phase,
}
TrackingTask.FIELDS = _FIELDS
