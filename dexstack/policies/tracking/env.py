"""The tracking environment: follow a hand-object reference in the sim cell (DexTrack-style), for training and for
evaluating any policy of the runtime.

This is the single-environment numpy path, kept as the readable reference of the batched task layer
(:mod:`dexstack.policies.tracking.task`, which the trainer and every backend use; tests check both agree).

Layers:

- :class:`TrackingTask` (no simulator): reward, success and termination from measured vs reference states;
- a backend with ``reset / command / advance / observe`` (:class:`~dexstack.policies.tracking.physics.CellBackend`
  is the MuJoCo cell; anything with those four methods works);
- :class:`TrackingEnv`: one episode on one reference, observations built by the runtime's own
  :class:`~dexstack.policies.observation.ObservationBuilder` and actions mapped by its
  :class:`~dexstack.policies.action.ActionMapper`, from the bundle manifest: training and deployment share the
  layouts by construction;
- :func:`run_episode` / :func:`evaluate`: a :class:`~dexstack.policies.registry.Policy` (replay, tracking, ...)
  run through :class:`~dexstack.policies.runtime.PolicyRuntime`, exactly as the node runs it (the one in-process
  episode loop: benches hook their perception and per-step measurements into it).

Episodes start at the end of the reference's approach phase (robot at the reference, object at rest): the approach
is a free-space joint motion that teaches nothing. Domain randomisation: object friction and mass, observation
noise on joints and the object pose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dexstack.policies.action import ActionMapper, clip_raw_action
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.observation import ObservationBuilder, RobotState, StepContext
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.registry import Policy
from dexstack.policies.runtime import PolicyRuntime
from dexstack.policies.tracking.task import Randomization, SuccessCriteria, TaskConfig  # noqa: F401 (one definition)
from dexstack.transforms import quat_angle_rad as quat_angle


class TrackingTask:
    """Reward / termination / success of one episode, from states only."""

    def __init__(self, reference: ReferenceTrajectory, config: TaskConfig | None = None):
        self.reference = reference
        self.config = config or TaskConfig()
        self.max_pos_err = 0.0
        self.last_pos_err = 0.0
        self.last_rot_err = 0.0

    def errors(self, object_pose: np.ndarray, t_s: float) -> tuple[float, float]:
        ref = self.reference.object_pose_at(t_s)
        return float(np.linalg.norm(object_pose[:3] - ref[:3])), quat_angle(object_pose[3:], ref[3:])

    def step(self, q: np.ndarray, object_pose: np.ndarray, t_s: float, raw_action: np.ndarray) -> tuple[float, bool]:
        c = self.config
        pos_err, rot_err = self.errors(object_pose, t_s)
        self.max_pos_err = max(self.max_pos_err, pos_err)
        self.last_pos_err, self.last_rot_err = pos_err, rot_err
        q_err = float(np.mean(np.abs(q - self.reference.q_at(t_s))))
        reward = (c.w_object_pos * np.exp(-c.k_object_pos * pos_err)
                  + c.w_object_rot * np.exp(-c.k_object_rot * rot_err)
                  + c.w_joints * np.exp(-c.k_joints * q_err) - c.w_action * float(np.mean(raw_action ** 2)))
        return float(reward), pos_err > c.terminate_position_error_m

    def success(self) -> bool:
        s = self.config.success
        return (self.max_pos_err <= s.max_position_error_m and self.last_pos_err <= s.final_position_error_m
                and self.last_rot_err <= s.final_rotation_error_rad)


def noisy_state(q, dq, obj, rng: np.random.Generator, r: Randomization) -> RobotState:
    q = q + rng.normal(0.0, r.joint_pos_noise_rad, q.shape) if r.joint_pos_noise_rad else q
    dq = dq + rng.normal(0.0, r.joint_vel_noise_rad_s, dq.shape) if r.joint_vel_noise_rad_s else dq
    obj = obj.copy()
    if r.object_pos_noise_m:
        obj[:3] += rng.normal(0.0, r.object_pos_noise_m, 3)
    if r.object_rot_noise_rad:
        obj[3:] += rng.normal(0.0, r.object_rot_noise_rad / 2, 4)
        obj[3:] /= np.linalg.norm(obj[3:])
    return RobotState(q=q, dq=dq, object_pose=obj)


def start_time_s(reference: ReferenceTrajectory) -> float:
    """End of the approach phase: the first reference sample where the object is about to be touched."""
    from dexstack.policies.tracking.references import PHASES_S  # noqa: PLC0415

    speed = PHASES_S[-1] / reference.duration_s
    return PHASES_S[0] / speed


class TrackingEnv:
    """One reference at a time, stepped at the manifest's control rate. ``reset`` -> obs; ``step(raw)`` ->
    (obs, reward, done, info)."""

    def __init__(self, manifest: PolicyManifest, description, backend, references: list[ReferenceTrajectory],
                 task_config: TaskConfig | None = None, randomization: Randomization | None = None, seed: int = 0):
        self.manifest = manifest
        self.description = description
        self.backend = backend
        self.references = references
        self.task_config = task_config or TaskConfig()
        self.randomization = randomization or Randomization()
        self.rng = np.random.default_rng(seed)
        self.obs_builder = ObservationBuilder(manifest, description)
        self.action = ActionMapper(manifest.action, description)
        self.period_s = manifest.period_s
        self.obs_size, self.action_size = self.obs_builder.size, self.action.size
        self.n_arm = len(description.arm_joints)
        self.reference: ReferenceTrajectory | None = None
        self.task: TrackingTask | None = None

    def _ctx(self, state: RobotState) -> StepContext:
        return StepContext(state=state, t_s=self.t, period_s=self.period_s, reference=self.reference,
                           last_target=self.last_target, last_action=self.last_action)

    def _observe(self) -> np.ndarray:
        q, dq, obj = self.backend.observe()
        self.true_state = RobotState(q=q, dq=dq, object_pose=obj)
        self.state = noisy_state(q, dq, obj, self.rng, self.randomization)
        return self.obs_builder.build(self._ctx(self.state))

    def reset(self, reference_index: int | None = None) -> np.ndarray:
        k = int(self.rng.integers(len(self.references))) if reference_index is None else reference_index
        self.reference = self.references[k]
        self.task = TrackingTask(self.reference, self.task_config)
        r = self.randomization
        self.t = start_time_s(self.reference)
        q0 = self.reference.q_at(self.t)
        self.backend.reset(q0, self.reference.object_pose_at(0.0), self.rng.uniform(*r.friction_scale),
                           self.rng.uniform(*r.mass_scale))
        self.last_target = q0.copy()
        self.last_action = np.zeros(self.action_size)
        return self._observe()

    def step(self, raw: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        raw = clip_raw_action(np.asarray(raw, dtype=float), self.manifest.action.clip)
        targets = self.action.targets(raw, self._ctx(self.state))
        self.backend.command(targets.arm, targets.hand, self.period_s)
        self.backend.advance(self.period_s)
        self.t += self.period_s
        self.last_target = targets.full(self.last_target, self.n_arm)
        self.last_action = raw
        obs = self._observe()
        reward, failed = self.task.step(self.true_state.q, self.true_state.object_pose, self.t, raw)
        timeout = self.t >= self.reference.duration_s - 1e-9
        done = failed or timeout
        info = {"success": self.task.success() if done and not failed else False, "failed": failed,
                "timeout": timeout}
        return obs, reward, done, info


@dataclass
class EpisodeResult:
    reference: str
    success: bool
    max_position_error_m: float
    final_position_error_m: float
    final_rotation_error_rad: float


def run_episode(policy: Policy, ref: ReferenceTrajectory, backend, description,
                task_config: TaskConfig | None = None, *,
                perceive: Callable[[float, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
                on_step: Callable[[float, np.ndarray], None] | None = None) -> TrackingTask:
    """One episode of ``policy`` on the full ``ref`` from home, through :class:`PolicyRuntime` as the node runs it:
    observe -> runtime step -> command -> advance one control period, scored by :class:`TrackingTask` on the
    simulator's object pose. ``perceive(now_s, q, dq, object_true)`` gives the object pose the policy sees (default:
    the simulator's, i.e. perfect perception); ``on_step(now_s, object_true)`` sees the object after each period."""
    runtime = PolicyRuntime(description)
    policy.reference = ref
    runtime.stage(policy)
    task = TrackingTask(ref, task_config)
    backend.reset(ref.q_at(0.0), ref.object_pose_at(0.0))
    period = runtime.period_s if runtime.active else policy.manifest.period_s
    now = 0.0
    while now < ref.duration_s - 1e-9:
        q, dq, obj = backend.observe()
        seen = obj if perceive is None else perceive(now, q, dq, obj)
        targets = runtime.step(RobotState(q=q, dq=dq, object_pose=seen), now)
        if targets is not None:
            backend.command(targets.arm, targets.hand, period)
        backend.advance(period)
        now += period
        _, _, obj = backend.observe()
        task.step(q, obj, now, np.zeros(1))
        if on_step is not None:
            on_step(now, obj)
    return task


def evaluate(policy: Policy, references: list[ReferenceTrajectory], backend, description,
             task_config: TaskConfig | None = None) -> list[EpisodeResult]:
    """Run ``policy`` through :class:`PolicyRuntime` (as the node does) on each full reference, from home, with the
    object pose from the simulator (perfect perception), no randomisation."""
    results = []
    for ref in references:
        task = run_episode(policy, ref, backend, description, task_config)
        results.append(EpisodeResult(ref.name, task.success(), task.max_pos_err, task.last_pos_err, task.last_rot_err))
    return results
