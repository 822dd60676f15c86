"""N tracking environments: the task layer (:mod:`.task`, torch) over any physics backend.

A backend has ``reset(ids, q, object_pose, friction_scale, mass_scale)`` and ``step(targets) -> dict`` with the true
(``q``, ``dq``, ``object_pose``) and observed (``q_obs``, ``dq_obs``, ``object_pose_obs``) states of every env after
one control period, as numpy arrays (:class:`~.cpu_backend.MujocoBatch`, :class:`~.cpu_backend.WorkerPool`) or
torch tensors on the task's device (:class:`~.mjwarp_backend.MjWarpBatch`: no host copies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dexstack.policies.tracking.task import Measured, TrackingTask


def _tensor(x, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x).to(device=like.device, dtype=like.dtype)


@dataclass
class StepInfo:
    done: torch.Tensor  # (N,) bool: the episode ended with this step (the env was reset)
    success: torch.Tensor  # (N,) bool: ended by reaching the reference's end within the criteria
    failed: torch.Tensor  # (N,) bool
    diverged: torch.Tensor  # (N,) bool: failed because the physics diverged (MuJoCo reset it), not by the task
    ref: torch.Tensor  # (N,) reference index of the episode that ran this step
    max_position_error_m: torch.Tensor  # (N,) of the episode that ran this step
    final_position_error_m: torch.Tensor  # (N,) after this step


class VecTrackingEnv:
    """``reset() -> obs (N, obs_size)``; ``step(raw (N, A)) -> (obs, reward, done, StepInfo)`` with auto-reset."""

    def __init__(self, task: TrackingTask, backend, n_envs: int, seed: int = 0, auto_reset: bool = True):
        self.task, self.backend, self.n_envs = task, backend, n_envs
        self.generator = torch.Generator(device=task.device).manual_seed(seed)
        self.state = task.new_state(n_envs)
        self.auto_reset = auto_reset
        self.observed: Measured | None = None
        self._sent: tuple | None = None  # step_send's clipped action, targets and (synchronous backend) outputs
        self.obs_size, self.action_size = task.obs_size, task.action_size

    def _measured(self, out: dict, suffix: str) -> Measured:
        like = self.state.t_s
        return Measured(_tensor(out["q" + suffix], like), _tensor(out["dq" + suffix], like),
                        _tensor(out["object_pose" + suffix], like))

    def _reset(self, ids: torch.Tensor, ref: torch.Tensor | None = None) -> None:
        if ids.numel() == 0:
            return
        start = self.task.reset(self.state, ids, self.generator, ref=ref)
        if not self.torch_backend:
            self.backend.reset(ids.cpu().numpy(), *(start[k].double().cpu().numpy() for k in
                                                    ("q", "object_pose", "friction_scale", "mass_scale")))
        else:
            self.backend.reset(ids, start["q"], start["object_pose"], start["friction_scale"], start["mass_scale"])

    @property
    def torch_backend(self) -> bool:
        """The backend takes and returns torch tensors on the task's device (else numpy arrays)."""
        return bool(getattr(self.backend, "torch_native", False))

    def reset(self, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Every env starts an episode (references ``ref`` if given, one per env)."""
        ids = torch.arange(self.n_envs, device=self.task.device)
        self._reset(ids, ref)
        out = self.backend.out
        self.observed = self.task.noisy(self._measured(out, "_obs"), self.generator)
        return self.task.observe(self.state, self.observed)

    def step(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, StepInfo]:
        self.step_send(raw)
        return self.step_recv()

    def step_send(self, raw: torch.Tensor) -> None:
        """First half of :meth:`step`: the actions to the backend. A backend with ``step_async`` (a
        :class:`~.cpu_backend.PoolGroup`) starts stepping and this returns at once; :meth:`step_recv` waits."""
        task = self.task
        raw_c, targets = task.targets(self.state, self.observed, raw.to(task.device))
        if self.torch_backend:
            out = self.backend.step(targets)
        elif hasattr(self.backend, "step_async"):
            self.backend.step_async(targets.double().cpu().numpy())
            out = None
        else:
            out = self.backend.step(targets.double().cpu().numpy())
        self._sent = (raw_c, targets, out)

    def step_recv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, StepInfo]:
        """Second half of :meth:`step`: the outcome of the actions :meth:`step_send` sent."""
        task, state = self.task, self.state
        raw_c, targets, out = self._sent
        self._sent = None
        if out is None:
            out = self.backend.step_wait()
        true = self._measured(out, "")
        reward, failed, timeout = task.advance(state, true, raw_c, targets)
        unstable = torch.zeros_like(failed)
        if "unstable" in out:  # the physics diverged and was reset: a failed episode, no reward for it
            unstable = _tensor(out["unstable"], state.t_s) > 0
            failed = failed | unstable
            reward = torch.where(unstable, torch.zeros_like(reward), reward)
        done = failed | timeout
        info = StepInfo(done=done, success=task.success(state) & timeout & ~failed, failed=failed, diverged=unstable,
                        ref=state.ref.clone(), max_position_error_m=state.max_pos_err.clone(),
                        final_position_error_m=state.last_pos_err.clone())
        if self.auto_reset:
            self._reset(torch.nonzero(done).flatten())
        observed = self._measured(out, "_obs")
        self.observed = task.noisy(observed, self.generator)
        return task.observe(state, self.observed), reward, done, info


def run_episodes(env: VecTrackingEnv, act: Callable[[torch.Tensor], torch.Tensor],
                 refs: torch.Tensor) -> dict[str, np.ndarray]:
    """One episode per env on references ``refs`` (N,), actions ``act(obs)``; returns per-episode ``success``,
    ``max_position_error_m``, ``final_position_error_m`` (first episode of each env only)."""
    obs = env.reset(refs)
    n = env.n_envs
    done_once = torch.zeros(n, dtype=torch.bool, device=env.task.device)
    success = torch.zeros_like(done_once)
    max_err = torch.zeros(n, dtype=env.task.dtype, device=env.task.device)
    final_err = torch.zeros_like(max_err)
    while not bool(done_once.all()):
        with torch.no_grad():
            raw = act(obs)
        obs, _, done, info = env.step(raw)
        new = done & ~done_once
        success[new] = info.success[new]
        max_err[new] = info.max_position_error_m[new]
        final_err[new] = info.final_position_error_m[new]
        done_once |= done
    return {"success": success.cpu().numpy(), "max_position_error_m": max_err.cpu().numpy(),
            "final_position_error_m": final_err.cpu().numpy()}
