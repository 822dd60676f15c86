"""MuJoCo Warp backend of the tracking task: the same cell (the MjModel that :class:`dexstack.sim.SimCell` builds
from the same robot description and cell config) in ``mujoco_warp`` with N worlds; states, controls, observations
are torch tensors aliasing Warp's arrays (``wp.to_torch``: no host copies), so the task layer and PPO run on the
same device (CUDA on a GPU machine; Warp's CPU device here, slowly, for equivalence checks).

Command semantics: the policy's targets go to the driver directly (arm ramped over the control period as the
joint_trajectory_controller does, hand stepped), clamped into the safety gate's joint-limit margin. The full
per-environment :class:`~dexstack.safety.gate.SafetyGate` (ruckig) is CPU Python and is not in this loop: train
with ``--backend cpu`` where the gate must be in the loop. Per-world friction/mass randomisation is not applied
here yet (the model is shared by all worlds). ``njmax``/``nconmax`` are sized for the hand grasping the cube
(MuJoCo Warp's defaults overflow on this scene).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dexstack.sim import SimCell  # noqa: E402
from dexstack.sim.scene import OBJECT_JOINT  # noqa: E402

NCONMAX_PER_WORLD, NJMAX_PER_WORLD = 96, 600


class MjWarpBatch:
    """N worlds on a Warp device; ``reset(ids, q, object_pose, friction_scale, mass_scale)``, ``step(targets)``."""

    torch_native = True

    def __init__(self, n_envs: int, period_s: float, timestep_s: float = 0.005, device: str = "cpu",
                 cell: str = "tabletop", position_margin_rad: float = 0.02):
        import warp as wp  # noqa: PLC0415

        wp.config.quiet = True  # before mujoco_warp initialises Warp: no banner or kernel-load lines on stdout
        import mujoco_warp as mjw  # noqa: PLC0415

        self._mjw, self._wp = mjw, wp
        sim = SimCell(cell, with_camera=False)
        self.description = d = sim.description
        mjm = sim.model
        mjm.opt.timestep = timestep_s
        self.mjm = mjm
        self.n_envs, self.period_s = n_envs, period_s
        self.nstep = int(round(period_s / timestep_s))
        self.device = wp.get_device(device)
        self.torch_device = torch.device("cuda" if self.device.is_cuda else "cpu")
        mjd = mujoco.MjData(mjm)
        mujoco.mj_forward(mjm, mjd)
        with wp.ScopedDevice(self.device):
            self.m = mjw.put_model(mjm)
            self.d = mjw.put_data(mjm, mjd, nworld=n_envs, nconmax=NCONMAX_PER_WORLD * n_envs,
                                  njmax=NJMAX_PER_WORLD)
        self.qpos, self.qvel = wp.to_torch(self.d.qpos), wp.to_torch(self.d.qvel)
        self.ctrl = wp.to_torch(self.d.ctrl)
        tdev = self.torch_device
        self.qpos_adr = torch.as_tensor([mjm.joint(j).qposadr[0] for j in d.joints], device=tdev)
        self.dof_adr = torch.as_tensor([mjm.joint(j).dofadr[0] for j in d.joints], device=tdev)
        self.act_ids = torch.as_tensor([mjm.actuator(j).id for j in d.joints], device=tdev)
        obj = mjm.joint(OBJECT_JOINT)
        self.obj_qpos = torch.arange(obj.qposadr[0], obj.qposadr[0] + 7, device=tdev)
        self.obj_dof = torch.arange(obj.dofadr[0], obj.dofadr[0] + 6, device=tdev)
        self.n_arm = len(d.arm_joints)
        limits = d.limit_arrays()
        mid = (limits["lower"] + limits["upper"]) / 2
        self.lower = torch.as_tensor(np.minimum(limits["lower"] + position_margin_rad, mid), device=tdev,
                                     dtype=self.qpos.dtype)
        self.upper = torch.as_tensor(np.maximum(limits["upper"] - position_margin_rad, mid), device=tdev,
                                     dtype=self.qpos.dtype)
        self.setpoint = self.qpos[:, self.qpos_adr].clone()
        self.out: dict[str, torch.Tensor] = {}
        self._refresh()

    def _refresh(self) -> None:
        q = self.qpos[:, self.qpos_adr]
        dq = self.qvel[:, self.dof_adr]
        wxyz = self.qpos[:, self.obj_qpos]
        obj = torch.cat([wxyz[:, :3], wxyz[:, 4:], wxyz[:, 3:4]], dim=-1)
        self.out = {"q": q, "dq": dq, "object_pose": obj, "q_obs": q, "dq_obs": dq, "object_pose_obs": obj}

    def reset(self, ids, q, object_pose, friction_scale=None, mass_scale=None) -> None:
        ids = torch.as_tensor(ids, device=self.torch_device, dtype=torch.long)
        q = torch.as_tensor(q, device=self.torch_device, dtype=self.qpos.dtype)
        pose = torch.as_tensor(object_pose, device=self.torch_device, dtype=self.qpos.dtype)
        rows = ids[:, None]
        self.qpos[rows, self.qpos_adr] = q
        self.qpos[rows, self.obj_qpos] = torch.cat([pose[:, :3], pose[:, 6:7], pose[:, 3:6]], dim=-1)
        self.qvel[ids] = 0.0
        self.ctrl[rows, self.act_ids] = q
        self.setpoint[ids] = q
        self._refresh()

    def step(self, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """One control period: the arm ramps from its setpoint to the (margin-clamped) target, the hand steps."""
        targets = torch.minimum(torch.maximum(torch.as_tensor(targets, device=self.torch_device,
                                                              dtype=self.qpos.dtype), self.lower), self.upper)
        prev, n_arm = self.setpoint, self.n_arm
        arm_ids, hand_ids = self.act_ids[:n_arm], self.act_ids[n_arm:]
        self.ctrl[:, hand_ids] = targets[:, n_arm:]
        with self._wp.ScopedDevice(self.device):
            for j in range(self.nstep):
                self.ctrl[:, arm_ids] = prev[:, :n_arm] + (j / self.nstep) * (targets[:, :n_arm] - prev[:, :n_arm])
                self._mjw.step(self.m, self.d)
        self.setpoint = targets.clone()
        self._refresh()
        return self.out


def state_error_vs_c(n_physics_steps: int = 20, n_envs: int = 2, timestep_s: float = 0.005) -> float:
    """Max |difference| of robot joint positions (rad) and object position (m) between MuJoCo Warp on Warp's CPU
    device and the MuJoCo C backend (:class:`~.cpu_backend.MujocoBatch`, gate off) after the same commands:
    the lift reference's start, then its next targets."""
    from dexstack.policies import load_reference, reference_path  # noqa: PLC0415
    from dexstack.policies.tracking.cpu_backend import CommandPath, MujocoBatch  # noqa: PLC0415
    from dexstack.policies.tracking.task import APPROACH_FRACTION  # noqa: PLC0415

    period = 0.05
    c_backend = MujocoBatch(n_envs, period, CommandPath.ideal("off", timestep_s))
    w_backend = MjWarpBatch(n_envs, period, timestep_s=timestep_s, device="cpu")
    ref = load_reference(reference_path("lift"), c_backend.description)
    t0 = ref.duration_s * APPROACH_FRACTION
    ids = np.arange(n_envs)
    q0 = np.tile(ref.q_at(t0), (n_envs, 1))
    obj0 = np.tile(ref.object_pose_at(0.0), (n_envs, 1))
    c_backend.reset(ids, q0, obj0, np.ones(n_envs), np.ones(n_envs))
    w_backend.reset(ids, q0, obj0)
    lower, upper = w_backend.lower.cpu().numpy(), w_backend.upper.cpu().numpy()
    periods = max(1, int(round(n_physics_steps * timestep_s / period)))
    for k in range(periods):
        target = np.clip(np.tile(ref.q_at(t0 + (k + 1) * period), (n_envs, 1)), lower, upper)
        c_out = c_backend.step(target)
        w_out = w_backend.step(torch.as_tensor(target))
    err_q = np.abs(c_out["q"] - w_out["q"].cpu().numpy()).max()
    err_obj = np.abs(c_out["object_pose"][:, :3] - w_out["object_pose"][:, :3].cpu().numpy()).max()
    return float(max(err_q, err_obj))
