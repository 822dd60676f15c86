"""Isaac Gym adapter: an IsaacGymEnvs-style ``VecTask`` of the tracking task over the same task layer.

NEVER RUN HERE: Isaac Gym is not on PyPI and needs an NVIDIA GPU. This file is typed against ``isaacgym-stubs``
(``gymapi``) and checked by mypy in the test suite (tests/unit/test_tracking_isaacgym_types.py); the rl_games
checkpoint it trains has the format :func:`dexstack.policies.checkpoints.load_rl_games` loads (tested with a
checkpoint laid out as rl_games' ``a2c_continuous`` saves it for :func:`rl_games_config`).

Use on a machine with Isaac Gym + IsaacGymEnvs: register ``TrackingVecTask`` in ``isaacgymenvs.tasks`` as
``DexstackTracking`` (its constructor has VecTask's signature), train with ``rl_games_config()`` written as
``train/DexstackTrackingPPO.yaml``, then copy ``runs/.../nn/DexstackTracking.pth`` into a bundle as ``model.pt``
with the manifest of :func:`dexstack.policies.tracking.trainer.tracking_manifest`.

Same as the MuJoCo backends: the robot and cube come from the same description (the profile's URDF, the cell
config's cube), observations/actions/rewards/resets/success are :class:`~.task.TrackingTask` on the GPU tensors.
Not the same: the physics engine (PhysX) and its PD drives; the safety gate is not in this loop (as mjwarp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from isaacgym import gymapi

from dexstack.policies.tracking.rl_games_config import rl_games_config  # noqa: F401 (re-exported for users)
from dexstack.policies.tracking.task import Measured, TaskState, TrackingTask


@dataclass
class IsaacTrackingConfig:
    num_envs: int = 4096
    env_spacing_m: float = 1.5
    sim_dt_s: float = 1.0 / 120.0
    substeps: int = 2
    control_decimation: int = 6  # 120 Hz / 6 = the policy's 20 Hz
    stiffness_arm: float = 400.0
    damping_arm: float = 40.0
    stiffness_hand: float = 3.0
    damping_hand: float = 0.1
    cube_half_m: float = 0.025


class TrackingVecTask:
    """IsaacGymEnvs ``VecTask`` protocol: ``obs_buf``, ``rew_buf``, ``reset_buf``, ``progress_buf``, ``extras``,
    ``step(actions) -> (obs_dict, rew, reset, extras)``, ``reset() -> obs_dict``."""

    def __init__(self, task: TrackingTask, urdf_root: str, urdf_file: str, config: IsaacTrackingConfig,
                 sim_device: str = "cuda:0", graphics_device_id: int = -1, headless: bool = True):
        self.task, self.config = task, config
        self.device = torch.device(sim_device)
        self.num_envs = config.num_envs
        self.num_obs, self.num_actions = task.obs_size, task.action_size
        self.gym: gymapi.Gym = gymapi.acquire_gym()
        self.sim = self._create_sim(int(sim_device.split(":")[-1]) if ":" in sim_device else 0, graphics_device_id)
        self._create_envs(urdf_root, urdf_file)
        self.gym.prepare_sim(self.sim)
        self._wrap_tensors()
        self.state: TaskState = task.new_state(self.num_envs)
        self.obs_buf = torch.zeros(self.num_envs, self.num_obs, device=self.device)
        self.rew_buf = torch.zeros(self.num_envs, device=self.device)
        self.reset_buf = torch.ones(self.num_envs, dtype=torch.long, device=self.device)
        self.progress_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.extras: dict[str, Any] = {}
        self.generator = torch.Generator(device=self.device)
        self.observed: Measured | None = None

    # ------------------------------------------------------------------ sim and assets
    def _create_sim(self, compute_device: int, graphics_device: int) -> gymapi.Sim:
        params = gymapi.SimParams()
        params.dt = self.config.sim_dt_s
        params.substeps = self.config.substeps
        params.up_axis = gymapi.UP_AXIS_Z
        params.gravity = gymapi.Vec3(0.0, 0.0, -9.81)
        params.use_gpu_pipeline = self.device.type == "cuda"
        params.physx.use_gpu = self.device.type == "cuda"
        params.physx.num_position_iterations = 8
        params.physx.num_velocity_iterations = 0
        sim = self.gym.create_sim(compute_device, graphics_device, gymapi.SIM_PHYSX, params)
        plane = gymapi.PlaneParams()
        plane.normal = gymapi.Vec3(0.0, 0.0, 1.0)
        self.gym.add_ground(sim, plane)
        return sim

    def _create_envs(self, urdf_root: str, urdf_file: str) -> None:
        c = self.config
        robot_opts = gymapi.AssetOptions()
        robot_opts.fix_base_link = True
        robot_opts.disable_gravity = True
        robot_opts.default_dof_drive_mode = int(gymapi.DOF_MODE_POS)
        robot = self.gym.load_asset(self.sim, urdf_root, urdf_file, robot_opts)
        cube_opts = gymapi.AssetOptions()
        cube = self.gym.create_box(self.sim, 2 * c.cube_half_m, 2 * c.cube_half_m, 2 * c.cube_half_m, cube_opts)
        n_arm = self.task.n_arm
        props = self.gym.get_asset_dof_properties(robot)
        for i in range(self.gym.get_asset_dof_count(robot)):
            props["stiffness"][i] = c.stiffness_arm if i < n_arm else c.stiffness_hand
            props["damping"][i] = c.damping_arm if i < n_arm else c.damping_hand
        lower = gymapi.Vec3(-c.env_spacing_m, -c.env_spacing_m, 0.0)
        upper = gymapi.Vec3(c.env_spacing_m, c.env_spacing_m, c.env_spacing_m)
        per_row = int(self.num_envs ** 0.5)
        self.envs: list[gymapi.Env] = []
        for i in range(self.num_envs):
            env = self.gym.create_env(self.sim, lower, upper, per_row)
            robot_pose = gymapi.Transform()
            handle = self.gym.create_actor(env, robot, robot_pose, "robot", i, 0)
            self.gym.set_actor_dof_properties(env, handle, props)
            cube_pose = gymapi.Transform()
            cube_pose.p = gymapi.Vec3(0.5, 0.0, c.cube_half_m)
            self.gym.create_actor(env, cube, cube_pose, "cube", i, 0)
            self.envs.append(env)

    def _wrap_tensors(self) -> None:
        from isaacgym import gymtorch  # type: ignore[attr-defined]  # noqa: PLC0415 (not in the stubs)

        dof = gymtorch.wrap_tensor(self.gym.acquire_dof_state_tensor(self.sim))
        root = gymtorch.wrap_tensor(self.gym.acquire_actor_root_state_tensor(self.sim))
        n = self.task.n_joints
        self.dof_state = dof.view(self.num_envs, n, 2)
        self.root_state = root.view(self.num_envs, 2, 13)  # actors: robot, cube; pos, quat xyzw, lin/ang vel
        self.dof_targets = torch.zeros(self.num_envs, n, device=self.device)
        self._gymtorch = gymtorch

    def _measured(self) -> Measured:
        self.gym.refresh_dof_state_tensor(self.sim)
        self.gym.refresh_actor_root_state_tensor(self.sim)
        return Measured(self.dof_state[..., 0], self.dof_state[..., 1], self.root_state[:, 1, :7])

    # ------------------------------------------------------------------ VecTask protocol
    def reset_idx(self, env_ids: torch.Tensor) -> None:
        start = self.task.reset(self.state, env_ids, self.generator)
        self.dof_state[env_ids, :, 0] = start["q"]
        self.dof_state[env_ids, :, 1] = 0.0
        self.dof_targets[env_ids] = start["q"]
        self.root_state[env_ids, 1, :7] = start["object_pose"]
        self.root_state[env_ids, 1, 7:] = 0.0
        gt = self._gymtorch
        ids32 = env_ids.to(torch.int32)
        self.gym.set_dof_state_tensor_indexed(self.sim, gt.unwrap_tensor(self.dof_state), gt.unwrap_tensor(ids32),
                                              len(ids32))
        self.gym.set_actor_root_state_tensor(self.sim, gt.unwrap_tensor(self.root_state))
        self.progress_buf[env_ids] = 0
        self.reset_buf[env_ids] = 0

    def reset(self) -> dict[str, torch.Tensor]:
        self.reset_idx(torch.arange(self.num_envs, device=self.device))
        self.observed = self.task.noisy(self._measured(), self.generator)
        self.obs_buf[:] = self.task.observe(self.state, self.observed)
        return {"obs": self.obs_buf}

    def step(self, actions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict]:
        assert self.observed is not None, "reset() first"
        raw, targets = self.task.targets(self.state, self.observed, actions)
        self.dof_targets[:] = targets
        self.gym.set_dof_position_target_tensor(self.sim, self._gymtorch.unwrap_tensor(self.dof_targets))
        for _ in range(self.config.control_decimation):
            self.gym.simulate(self.sim)
            self.gym.fetch_results(self.sim, True)
        true = self._measured()
        reward, failed, timeout = self.task.advance(self.state, true, raw, targets)
        done = failed | timeout
        self.rew_buf[:] = reward
        self.extras = {"successes": (self.task.success(self.state) & timeout & ~failed).float(),
                       "time_outs": timeout}
        self.progress_buf += 1
        ids = torch.nonzero(done).flatten()
        if ids.numel():
            self.reset_idx(ids)
        self.reset_buf[:] = done.long()
        self.observed = self.task.noisy(self._measured(), self.generator)
        self.obs_buf[:] = self.task.observe(self.state, self.observed)
        return {"obs": self.obs_buf}, self.rew_buf, self.reset_buf, self.extras
