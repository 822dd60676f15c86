"""N grasp environments: :class:`~dexstack.policies.tracking.vec_env.VecTrackingEnv` over a
:class:`~dexstack.policies.grasp.physics.MultiObjectBatch`, with the palm/link/force outputs in the measured state."""

from __future__ import annotations

import torch

from dexstack.policies.grasp.task import GraspMeasured, GraspTask
from dexstack.policies.tracking.vec_env import VecTrackingEnv, _tensor


class VecGraspEnv(VecTrackingEnv):
    """Env ``i`` grasps ``backend.env_object[i]`` (one of that object's episodes per reset)."""

    def __init__(self, task: GraspTask, backend, seed: int = 0, auto_reset: bool = True):
        super().__init__(task, backend, backend.n_envs, seed=seed, auto_reset=auto_reset)
        task.env_object = list(backend.env_object)

    def _measured(self, out: dict, suffix: str) -> GraspMeasured:
        like = self.state.t_s
        return GraspMeasured(_tensor(out["q" + suffix], like), _tensor(out["dq" + suffix], like),
                             _tensor(out["object_pose" + suffix], like), _tensor(out["palm"], like),
                             _tensor(out["links"], like), _tensor(out["force"], like))


class History:
    """The student's input: its last ``steps`` observations, oldest first, flattened; a new episode starts with
    ``steps`` copies of its first observation (as the runtime does)."""

    def __init__(self, n_envs: int, obs_size: int, steps: int):
        self.steps = steps
        self.buf = torch.zeros(n_envs, steps, obs_size)

    def reset(self, obs: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        if ids is None:
            self.buf[:] = obs[:, None]
        elif ids.numel():
            self.buf[ids] = obs[ids][:, None]
        return self.flat()

    def push(self, obs: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.buf = torch.cat([self.buf[:, 1:], obs[:, None]], dim=1)
        return self.reset(obs, torch.nonzero(done).flatten())

    def flat(self) -> torch.Tensor:
        return self.buf.reshape(self.buf.shape[0], -1)
