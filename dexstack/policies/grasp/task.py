"""The grasp task (FunGrasp) on the shared batched task layer: N environments as torch tensor code.

It is the tracking task (:class:`~dexstack.policies.tracking.task.TrackingTask`: manifest-defined observation
layout, residual action around a reference, randomised friction/mass, observation noise) with a grasp episode's
reference (:mod:`dexstack.grasp.episode`: pre-grasp -> approach -> close -> lift 10 cm -> hold) and:

Observation fields (the runtime's :mod:`dexstack.policies.grasp.fields` computes the same from forward kinematics):

- ``grasp_palm`` (7): the target palm pose (the measured object pose composed with the target's ``T_object_palm``)
  in the current palm frame: position (m) + quaternion xyzw (w >= 0);
- ``grasp_links`` (3L): the target's link positions (object frame, placed with the measured object pose) minus the
  current link positions, in the current palm frame (m);
- ``grasp_contact_mask`` (L): 1 on the links that should touch the object;
- ``link_contact_force`` (L): the normal force (N) on each link from the object, clamped to ``FORCE_CLAMP_N``:
  privileged, the teacher's only (FunGrasp's teacher sees per-link contact; the deployed student does not).

Reward per control step (:class:`GraspTaskConfig`), FunGrasp's terms plus the lift:

- ``w_links exp(-k_links e_links)``: e_links the weighted mean distance between the links' positions in the palm
  (wrist) frame and the target's in the target palm frame (fingertips x4, thumb tip x6, other links x1);
- ``w_wrist exp(-k_wrist e_wrist)``: e_wrist the palm's position error in the object frame;
- ``w_contact``: the fraction of target-contact links touching (normal force > ``contact_threshold_n``), from the
  close on;
- ``w_impulse``: the mean over target-contact links of min(force, cap) / cap, from the close on (impulse per step);
- ``w_lift exp(-k_lift |z - z_ref|)``: the object's height against the reference's, from the lift on (not in
  FunGrasp's list: its lift is scripted; here the arm's residual can help or hurt it);
- ``- w_object_vel |v_object|`` before the lift (do not push the object), ``|v_object - v_palm|`` after (slip);
- ``- w_wrist_vel |v_palm|`` before the lift; ``- w_action |a|^2`` (velocities saturate at ``max_vel_m_s``).

Success (issue 12): at the episode's end the object has risen >= ``success_rise_m`` and moved < ``max_slip_m``
relative to the palm over the hold. Failure (early end): the object fell (``drop_m`` below its start), was flung
(``max_object_palm_m`` from the palm), or in the hold it is not lifted by ``hold_min_rise_m`` (it dropped back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dexstack.grasp.episode import GraspPhases
from dexstack.policies.grasp.bank import GraspEpisode
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.tracking.task import (
    _FIELDS,
    Measured,
    Randomization,
    TaskState,
    TrackingTask,
    positive_w,
    quat_conj,
    quat_mul,
)
from dexstack.robot.description import RobotDescription

FORCE_CLAMP_N = 20.0
TIP_WEIGHT, THUMB_TIP_WEIGHT = 4.0, 6.0
THUMB_TIP_LINK = "link_15.0_tip"


def link_weights(link_names: tuple[str, ...]) -> np.ndarray:
    """FunGrasp's link weights: fingertips x4, the thumb tip x6, other links x1."""
    return np.array([THUMB_TIP_WEIGHT if n == THUMB_TIP_LINK else TIP_WEIGHT if n.endswith("_tip") else 1.0
                     for n in link_names])


def quat_apply(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v`` (..., 3) by xyzw quaternions ``q`` (..., 4) (broadcasting)."""
    qv, w = q[..., :3], q[..., 3:]
    t = 2.0 * torch.cross(qv.expand_as(v), v, dim=-1)
    return v + w * t + torch.cross(qv.expand_as(v), t, dim=-1)


@dataclass(frozen=True)
class GraspTaskConfig:
    w_links: float = 1.0
    k_links: float = 20.0  # 1/m
    w_wrist: float = 1.0
    k_wrist: float = 20.0  # 1/m
    w_contact: float = 1.0
    w_impulse: float = 0.5
    impulse_cap_n: float = 5.0
    contact_threshold_n: float = 0.1
    w_lift: float = 2.0
    k_lift: float = 20.0  # 1/m
    w_object_vel: float = 0.5  # per m/s
    w_wrist_vel: float = 0.1  # per m/s
    w_action: float = 0.01
    success_rise_m: float = 0.08
    max_slip_m: float = 0.02
    drop_m: float = 0.05
    hold_min_rise_m: float = 0.03
    max_vel_m_s: float = 2.0  # velocity penalties saturate here
    max_object_palm_m: float = 0.5  # an object this far from the palm was flung: the episode fails
    phases: GraspPhases = field(default_factory=GraspPhases)
    # Where episodes start: "pregrasp" (robot at the pre-grasp, object at rest: training, the free-space reach
    # teaches nothing) or "reach" (robot at the plan's start, home: as the launched graph runs a target).
    start: str = "pregrasp"

    def __post_init__(self) -> None:
        for name in ("k_links", "k_wrist", "k_lift", "impulse_cap_n", "success_rise_m", "max_slip_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GraspTaskConfig.{name} must be positive")
        if self.start not in ("pregrasp", "reach"):
            raise ValueError(f"GraspTaskConfig.start must be 'pregrasp' or 'reach', got {self.start!r}")


@dataclass
class GraspMeasured(Measured):
    """The tracking task's state plus the palm pose (N, 7), link positions (N, L, 3) and link forces (N, L)."""

    palm: torch.Tensor | None = None
    links: torch.Tensor | None = None
    force: torch.Tensor | None = None


@dataclass
class GraspState(TaskState):
    z0: torch.Tensor | None = None  # (N,) object height at the episode's start
    last_obj_pos: torch.Tensor | None = None  # (N, 3) true, for velocities (NaN: none yet)
    last_palm_pos: torch.Tensor | None = None
    hold_obj_in_palm: torch.Tensor | None = None  # (N, 3) object position in the palm frame at the hold's start
    rise: torch.Tensor | None = None  # (N,) last object rise (m)
    slip: torch.Tensor | None = None  # (N,) last slip over the hold (m)
    parts: dict = field(default_factory=dict)  # last reward terms (N,) each, for curves and tests


class GraspTask(TrackingTask):
    """Observation, action (residual around the episode's reference), reward, success and resets of grasping."""

    FIELDS: dict = {}

    def __init__(self, manifest: PolicyManifest, description: RobotDescription, episodes: list[GraspEpisode],
                 config: GraspTaskConfig | None = None, randomization: Randomization | None = None,
                 device: str = "cpu", dtype: torch.dtype = torch.float32):
        if not episodes:
            raise ValueError("the grasp task needs at least one episode")
        self.grasp = config or GraspTaskConfig()
        super().__init__(manifest, description, [e.plan.reference for e in episodes], None, randomization,
                         device, dtype)
        self.episodes = episodes
        names = {e.target.link_names for e in episodes}
        if len(names) != 1:
            raise ValueError(f"every grasp target must constrain the same links, got {names}")
        self.link_names = episodes[0].target.link_names
        T_op = np.array([e.target.T_object_palm for e in episodes])
        from dexstack.transforms import matrix_to_quat_xyzw  # noqa: PLC0415

        self.palm_pos_obj = self._t(T_op[:, :3, 3])  # (R, 3)
        self.palm_quat_obj = self._t([matrix_to_quat_xyzw(T[:3, :3]) for T in T_op])  # (R, 4)
        links_obj = np.array([e.target.link_positions_object_m for e in episodes])  # (R, L, 3)
        self.links_obj = self._t(links_obj)
        # the target links in the target palm frame: R_op^T (p - t_op)
        self.links_palm = self._t(np.einsum("rji,rlj->rli", T_op[:, :3, :3], links_obj - T_op[:, None, :3, 3]))
        self.mask = self._t(np.array([e.target.contact_mask for e in episodes], dtype=float))  # (R, L)
        self.weights = self._t(link_weights(self.link_names))
        self.objects = sorted({e.object_name for e in episodes})
        self.refs_of_object = {o: torch.as_tensor([i for i, e in enumerate(episodes) if e.object_name == o],
                                                  device=self.device) for o in self.objects}
        self.env_object: list[str] | None = None  # set by the env: which object each env's physics has
        # where the physics puts each episode's object: its true placement when the plan was made from another
        # (perceived) pose, else the reference's start
        true = [e.T_base_object_true for e in episodes]
        self.object_start = None
        if any(T is not None for T in true):
            start = [e.plan.T_base_object if T is None else T for e, T in zip(episodes, true)]
            self.object_start = self._t([np.concatenate([T[:3, 3], matrix_to_quat_xyzw(T[:3, :3])]) for T in start])

    # -------------------------------------------------------------------------------- resets
    def new_state(self, n_envs: int) -> GraspState:
        base = super().new_state(n_envs)
        z = torch.zeros(n_envs, dtype=self.dtype, device=self.device)
        nan3 = torch.full((n_envs, 3), float("nan"), dtype=self.dtype, device=self.device)
        return GraspState(**vars(base), z0=z.clone(), last_obj_pos=nan3.clone(), last_palm_pos=nan3.clone(),
                          hold_obj_in_palm=nan3.clone(), rise=z.clone(), slip=z.clone())

    def sample_refs(self, env_ids: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A random episode of each env's object (any episode if envs are not bound to objects)."""
        if self.env_object is None:
            return torch.randint(len(self.bank), (env_ids.numel(),), generator=generator, device=self.device)
        out = torch.empty(env_ids.numel(), dtype=torch.long, device=self.device)
        for k, i in enumerate(env_ids.tolist()):
            refs = self.refs_of_object[self.env_object[i]]
            out[k] = refs[torch.randint(len(refs), (1,), generator=generator, device=self.device)]
        return out

    def reset(self, state: GraspState, env_ids: torch.Tensor, generator: torch.Generator | None,
              ref: torch.Tensor | None = None, t_s: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if ref is None:
            ref = self.sample_refs(env_ids, generator)
        if t_s is None:
            t0 = self.grasp.phases.t_pregrasp_s if self.grasp.start == "pregrasp" else 0.0
            t_s = torch.full((env_ids.numel(),), t0, dtype=self.dtype, device=self.device)
        start = super().reset(state, env_ids, generator, ref=ref, t_s=t_s)
        if self.object_start is not None:  # the object where it truly is (the plan's pose was perceived)
            start["object_pose"] = self.object_start[ref]
        state.z0[env_ids] = start["object_pose"][:, 2]
        for name in ("last_obj_pos", "last_palm_pos", "hold_obj_in_palm"):
            getattr(state, name)[env_ids] = float("nan")
        state.rise[env_ids] = 0.0
        state.slip[env_ids] = 0.0
        return start

    def noisy(self, m: GraspMeasured, generator: torch.Generator | None) -> GraspMeasured:
        base = super().noisy(m, generator)
        return GraspMeasured(base.q, base.dq, base.object_pose, m.palm, m.links, m.force)

    # -------------------------------------------------------------------------------- geometry
    def target_palm(self, state: GraspState, object_pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target palm pose in the base frame for the given object poses: (pos (N, 3), quat (N, 4))."""
        oq = object_pose[:, 3:]
        pos = object_pose[:, :3] + quat_apply(oq, self.palm_pos_obj[state.ref])
        return pos, quat_mul(oq, self.palm_quat_obj[state.ref])

    def target_links_base(self, state: GraspState, object_pose: torch.Tensor) -> torch.Tensor:
        return object_pose[:, None, :3] + quat_apply(object_pose[:, None, 3:], self.links_obj[state.ref])

    def targets(self, state: TaskState, m: Measured, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As tracking's; during the reach (episodes started at home) the reference as it is, the residual zeroed, as
        the deployed grasp policy plays it (:class:`dexstack.policies.grasp.policy.GraspPolicy`)."""
        if self.grasp.start == "reach":  # episodes from the pre-grasp (training) never see the reach
            reach = state.t_s < self.grasp.phases.t_pregrasp_s - 1e-6
            raw = torch.where(reach[:, None], torch.zeros_like(raw), raw)
        return super().targets(state, m, raw)

    # -------------------------------------------------------------------------------- reward and success
    def advance(self, state: GraspState, true: GraspMeasured, raw: torch.Tensor,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c, ph = self.grasp, self.grasp.phases
        t_prev = state.t_s
        state.t_s = t = state.t_s + self.period_s
        obj_pos, obj_q = true.object_pose[:, :3], true.object_pose[:, 3:]
        palm_pos, palm_q = true.palm[:, :3], true.palm[:, 3:]
        # link error in the wrist (palm) frame: current links in the current palm frame vs the target's
        links_palm = quat_apply(quat_conj(palm_q)[:, None], true.links - palm_pos[:, None])
        dist = (links_palm - self.links_palm[state.ref]).norm(dim=-1)  # (N, L)
        e_links = (dist * self.weights).sum(-1) / self.weights.sum()
        # palm position in the object frame vs the target's
        palm_in_obj = quat_apply(quat_conj(obj_q), palm_pos - obj_pos)
        e_wrist = (palm_in_obj - self.palm_pos_obj[state.ref]).norm(dim=-1)
        mask = self.mask[state.ref]
        n_mask = mask.sum(-1).clamp(min=1.0)
        closing = (t > ph.t_close_s).to(self.dtype)
        lifting = t > ph.t_lift_s
        touching = (true.force > c.contact_threshold_n).to(self.dtype)
        contact = closing * (touching * mask).sum(-1) / n_mask
        impulse = closing * (true.force.clamp(max=c.impulse_cap_n) / c.impulse_cap_n * mask).sum(-1) / n_mask
        z_ref = self.bank.object_pose_at(state.ref, t[:, None])[:, 0, 2]
        lift = lifting.to(self.dtype) * torch.exp(-c.k_lift * (obj_pos[:, 2] - z_ref).abs())
        fresh = torch.isnan(state.last_obj_pos[:, 0])
        v_obj = torch.where(fresh[:, None], torch.zeros_like(obj_pos), (obj_pos - state.last_obj_pos) / self.period_s)
        v_palm = torch.where(fresh[:, None], torch.zeros_like(obj_pos),
                             (palm_pos - state.last_palm_pos) / self.period_s)
        # clamped: an object flung by a contact blow-up (5 ms physics steps) must not swamp the returns
        obj_vel = torch.where(lifting, (v_obj - v_palm).norm(dim=-1), v_obj.norm(dim=-1)).clamp(max=c.max_vel_m_s)
        wrist_vel = torch.where(lifting, torch.zeros_like(obj_vel), v_palm.norm(dim=-1)).clamp(max=c.max_vel_m_s)
        parts = {"links": c.w_links * torch.exp(-c.k_links * e_links),
                 "wrist": c.w_wrist * torch.exp(-c.k_wrist * e_wrist),
                 "contact": c.w_contact * contact, "impulse": c.w_impulse * impulse, "lift": c.w_lift * lift,
                 "object_vel": -c.w_object_vel * obj_vel, "wrist_vel": -c.w_wrist_vel * wrist_vel,
                 "action": -c.w_action * (raw ** 2).mean(-1)}
        reward = sum(parts.values())
        state.parts = {**parts, "e_links_m": e_links, "e_wrist_m": e_wrist, "contact_fraction": contact}
        # success bookkeeping: rise, and the object's position in the palm frame from the hold's start
        obj_in_palm = quat_apply(quat_conj(palm_q), obj_pos - palm_pos)
        starts_hold = (t_prev < ph.t_hold_s - 1e-6) & (t >= ph.t_hold_s - 1e-6)
        state.hold_obj_in_palm = torch.where(starts_hold[:, None], obj_in_palm, state.hold_obj_in_palm)
        state.rise = obj_pos[:, 2] - state.z0
        slip = (obj_in_palm - state.hold_obj_in_palm).norm(dim=-1)
        state.slip = torch.where(torch.isnan(slip), torch.zeros_like(slip), slip)
        state.last_obj_pos, state.last_palm_pos = obj_pos.clone(), palm_pos.clone()
        state.last_action, state.last_target = raw, targets
        in_hold = t >= ph.t_hold_s + self.period_s
        # from the pre-grasp on: at home (an episode with the reach) the palm is ~0.5 m from the object anyway
        flung = (t > ph.t_pregrasp_s + 1e-6) & ((obj_pos - palm_pos).norm(dim=-1) > c.max_object_palm_m)
        failed = (state.rise < -c.drop_m) | (in_hold & (state.rise < c.hold_min_rise_m)) | flung
        timeout = t >= self.bank.duration_s[state.ref] - 1e-6
        return reward, failed, timeout

    def success(self, state: GraspState) -> torch.Tensor:
        c = self.grasp
        return (state.rise >= c.success_rise_m) & (state.slip < c.max_slip_m)


# ------------------------------------------------------------------------------------------ observation fields
def _grasp_palm(task: GraspTask, s: GraspState, m: GraspMeasured, window, relative):
    pos, quat = task.target_palm(s, m.object_pose)
    inv = quat_conj(m.palm[:, 3:])
    return torch.cat([quat_apply(inv, pos - m.palm[:, :3]), positive_w(quat_mul(inv, quat))], dim=-1)


def _grasp_links(task: GraspTask, s: GraspState, m: GraspMeasured, window, relative):
    diff = task.target_links_base(s, m.object_pose) - m.links
    return quat_apply(quat_conj(m.palm[:, 3:])[:, None], diff).reshape(diff.shape[0], -1)


GraspTask.FIELDS = {
    **_FIELDS,
    "grasp_palm": _grasp_palm,
    "grasp_links": _grasp_links,
    "grasp_contact_mask": lambda task, s, m, w, rel: task.mask[s.ref],
    "link_contact_force": lambda task, s, m, w, rel: m.force.clamp(0.0, FORCE_CLAMP_N),
}
