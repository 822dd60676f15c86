"""The open-loop (kinematic) grasp baseline in the MuJoCo cell, every command through the safety gate.

Phases (FunGrasp's kinematic baseline): move the palm to the retargeted pre-grasp (hand opened), approach the
grasp pose, close the hand to the target joints plus a press (``flex_rad`` of flexion on every finger joint; a
position-controlled hand that only reaches the touching pose pushes with nothing), lift the palm 10 cm with the
arm, hold 2 s. Arm goals come from pinocchio IK of the palm pose (``ArmIK``); the gate (``SafetyGate``, the
deployed limits of ``config/safety.yaml``) filters every command at its rate before the simulated drivers see it.

Success (issue 12): the object rises >= 8 cm and stays in the hand for the 2 s hold with < 2 cm slip (its
displacement relative to the palm between the end of the lift and the end of the hold).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from dexstack.retarget.arm import ArmIK, ArmIKConfig
from dexstack.retarget.functional import ROBOT_FINGER, GraspTarget
from dexstack.safety.gate import SafetyGate, load_safety_config
from dexstack.sim.cell import SimCell
from dexstack.transforms import invert_transform


class UnreachableError(ValueError):
    """The arm cannot put the palm where the grasp target needs it; nothing was sent."""


@dataclass(frozen=True)
class BaselineConfig:
    pregrasp_s: float = 2.5
    approach_s: float = 1.5
    close_s: float = 1.5
    lift_s: float = 2.0
    hold_s: float = 2.0
    lift_m: float = 0.10
    # How the closed hand presses: +flex_rad on every finger flexion joint, plus the squeeze pose
    # (GraspTarget.q_squeeze_rad) clipped to squeeze_rad past the target. Measured on the 11 train-object library
    # grasps, one placement each, fingertip pads facing the object (docs/grasp.md): flex 0.3 over a 1 s close 2/11,
    # squeeze 0.4 alone 1/11, flex 0.5 over a 1.5 s close 4/11 (the gate caps the setpoint 0.3 rad ahead of a
    # blocked finger; the slower close pushes the object less before the thumb opposes the fingers).
    squeeze_rad: float = 0.0
    flex_rad: float = 0.5
    success_rise_m: float = 0.08
    max_slip_m: float = 0.02
    ik_position_tol_m: float = 0.005
    ik_rotation_tol_rad: float = 0.05
    # the pre-grasp is a backed-off approach waypoint: a few degrees there are taken out on the straight approach to
    # the grasp, which keeps ik_rotation_tol_rad (the sim_grasp graph's can target missed 2.9 deg at 4 deg, run to run)
    ik_pregrasp_rotation_tol_rad: float = 0.1
    max_phase_step_rad: float = 1.0  # grasp/lift joints this close to the phase before (same IK branch)


@dataclass
class TrialResult:
    success: bool
    rise_m: float
    slip_m: float
    touching_fingers: tuple[str, ...]  # robot fingers touching the object after the close
    contact_match: float  # fraction of the human contact fingers whose robot counterpart touches
    interventions: int
    blocked_by_table: tuple[str, ...] = ()  # robot bodies touching the table when the hand has closed
    palm_error_m: float = 0.0  # palm position error w.r.t. the target when the hand has closed
    hand_error_rad: float = 0.0  # largest hand joint error w.r.t. the target when the hand has closed


def finger_of_body(name: str, finger_links: dict[str, tuple[str, ...]]) -> str | None:
    for finger, links in finger_links.items():
        if name in links:
            return finger
    return "palm" if name == "palm_link" else None


def plan_arm(ik: ArmIK, target: GraspTarget, T_base_object: np.ndarray, q_arm_seed: np.ndarray,
             lift_m: float, config: BaselineConfig, collision_m=None) -> dict[str, np.ndarray]:
    """Arm joints of the pre-grasp, grasp and lift palm poses.

    The pre-grasp IK restarts from several seeds (the warm start, the home posture, then seeded random postures);
    the grasp and the lift are solved from the phase before and must stay within ``max_phase_step_rad`` of it (the
    same IK branch: a short, straight approach and lift). A solution counts when it is within tolerance and, with
    ``collision_m`` (``(q_arm, q_hand) -> penetration m``, the gate's self/table check), collision-free.
    :class:`UnreachableError` names the pose that fails and why.
    """
    rng = np.random.default_rng(0)
    lower, upper = ik.lower_rad, ik.upper_rad
    home = ik.description.home(ik.joint_names)
    seeds = [q_arm_seed, home, *(home + rng.uniform(-1, 1, len(home)) * 0.5 * (upper - lower) for _ in range(12))]
    poses = (("pre-grasp", target.T_base_palm(T_base_object, pregrasp=True), target.q_pregrasp_rad),
             ("grasp", target.T_base_palm(T_base_object), target.q_hand_rad),
             ("lift", _lifted(target.T_base_palm(T_base_object), lift_m), target.q_hand_rad))
    worst = (0, "")  # (phase index reached, why) of the best failed attempt, for the message

    def solve(T, q_hand, seed, rotation_tol_rad):
        res = ik.solve(T, np.clip(seed, lower, upper))
        if res.position_error_m > config.ik_position_tol_m or res.rotation_error_rad > rotation_tol_rad:
            return None, (f"the arm gets within {1000 * res.position_error_m:.0f} mm / "
                          f"{np.degrees(res.rotation_error_rad):.0f} deg of it")
        collision = collision_m(res.q_rad, q_hand) if collision_m is not None else 0.0
        if collision > 0.0:
            return None, f"in collision (robot with itself or the table, {1000 * collision:.0f} mm deep)"
        return res.q_rad, ""

    for seed in seeds:
        plan, why = {}, ""
        for k, (name, T, q_hand) in enumerate(poses):
            tol = config.ik_pregrasp_rotation_tol_rad if name == "pre-grasp" else config.ik_rotation_tol_rad
            q, why = solve(T, q_hand, seed if k == 0 else plan[poses[k - 1][0]], tol)
            if q is not None and k > 0 and np.abs(q - plan[poses[k - 1][0]]).max() > config.max_phase_step_rad:
                q, why = None, f"only reached on another IK branch than the {poses[k - 1][0]}"
            if q is None:
                if k >= worst[0]:
                    worst = (k, f"{'unreachable' if 'gets within' in why else 'bad'} {name} pose: {why}")
                break
            plan[name] = q
        if len(plan) == len(poses):
            return plan
    raise UnreachableError(worst[1])


def _lifted(T: np.ndarray, dz: float) -> np.ndarray:
    out = T.copy()
    out[2, 3] += dz
    return out


class OpenLoopGrasp:
    """Runs the baseline on a :class:`SimCell` whose object is the target's object."""

    def __init__(self, sim: SimCell, config: BaselineConfig | None = None,
                 finger_links: dict[str, tuple[str, ...]] | None = None):
        self.sim, self.config = sim, config or BaselineConfig()
        d = sim.description
        self.ik = ArmIK(d, ArmIKConfig(max_iterations=200, posture_weight=1e-4))
        self.safety = load_safety_config()
        self.finger_links = finger_links or {}
        self._n_arm = len(d.arm_joints)
        # finger flexion joints (not the abductions, not the thumb's rotation): Allegro joints 1-3, 5-7, 9-11, 13-15
        self._flex = np.array([not j.endswith(("_0.0", "_4.0", "_8.0", "_12.0")) for j in d.hand_joints], float)

    def run(self, target: GraspTarget, human_fingers: tuple[str, ...] | None = None,
            T_base_object: np.ndarray | None = None) -> TrialResult:
        """One trial. ``T_base_object``: the object pose the grasp is planned from (perception's; default the
        simulator's); the rise and slip are always measured on the simulator's."""
        sim, cfg, d = self.sim, self.config, self.sim.description
        z0 = float(sim.object_pose()[2, 3])
        T_base_object = sim.object_pose() if T_base_object is None else np.asarray(T_base_object, dtype=float)
        q_now = sim.joint_state().position_rad
        gate = SafetyGate(d, self.safety)
        self.intervention_counts: Counter[str] = Counter()  # the gate's reasons in the last run, for diagnosis
        plan = plan_arm(self.ik, target, T_base_object, q_now[: self._n_arm], cfg.lift_m, cfg,
                        lambda q_arm, q_hand: gate.collision_violation_m(np.concatenate((q_arm, q_hand))))
        dt = 1.0 / self.safety.rate_hz
        steps_per_tick = max(1, int(round(dt / sim.timestep_s)))
        interventions = 0
        # Press: finger flexion, plus the target's squeeze pose (contacts squeeze_depth_m inside) if configured.
        hand_closed = target.q_hand_rad + np.clip(target.q_squeeze_rad - target.q_hand_rad, -cfg.squeeze_rad,
                                                  cfg.squeeze_rad) + cfg.flex_rad * self._flex
        hand_closed = np.clip(hand_closed, *self._hand_limits())

        def run_phase(q_arm_goal, q_hand, duration_s):
            nonlocal interventions
            t0 = sim.time_s
            gate.update_state(sim.joint_state().position_rad, t0)
            gate.arm_command(d.arm_joints, [q_arm_goal.tolist()], [duration_s], t0)
            while sim.time_s - t0 < duration_s + 0.3:
                now = sim.time_s
                gate.update_state(sim.joint_state().position_rad, now)
                gate.hand_command(q_hand, now)
                out = gate.tick(now)
                interventions += len(out.interventions)
                self.intervention_counts.update(out.interventions)
                if out.arm_rad is not None:
                    sim.command_arm_trajectory(d.arm_joints, [out.arm_rad.tolist()], [max(out.horizon_s, dt)])
                if out.hand_rad is not None:
                    sim.command_hand_positions(out.hand_rad)
                sim.step(steps_per_tick)

        run_phase(plan["pre-grasp"], target.q_pregrasp_rad, cfg.pregrasp_s)
        run_phase(plan["grasp"], target.q_pregrasp_rad, cfg.approach_s)
        run_phase(plan["grasp"], hand_closed, cfg.close_s)
        touching, on_table = self.touching_fingers(), self.table_contacts()
        palm_error = float(np.linalg.norm(self._palm_pose()[:3, 3] - target.T_base_palm(T_base_object)[:3, 3]))
        hand_error = float(np.abs(sim.joint_state().position_rad[self._n_arm:] - target.q_hand_rad).max())
        run_phase(plan["lift"], hand_closed, cfg.lift_s)
        T_palm_obj_lift = invert_transform(self._palm_pose()) @ sim.object_pose()
        run_phase(plan["lift"], hand_closed, cfg.hold_s)
        T_palm_obj_end = invert_transform(self._palm_pose()) @ sim.object_pose()
        rise = float(sim.object_pose()[2, 3] - z0)
        slip = float(np.linalg.norm(T_palm_obj_end[:3, 3] - T_palm_obj_lift[:3, 3]))
        human = human_fingers if human_fingers is not None else target.human_contact_fingers
        match = sum(ROBOT_FINGER[f] in touching for f in human) / max(len(human), 1)
        return TrialResult(success=rise >= cfg.success_rise_m and slip < cfg.max_slip_m, rise_m=rise, slip_m=slip,
                           touching_fingers=touching, contact_match=match, interventions=interventions,
                           blocked_by_table=on_table, palm_error_m=palm_error, hand_error_rad=hand_error)

    def _hand_limits(self) -> tuple[np.ndarray, np.ndarray]:
        lim = self.sim.description.limit_arrays(self.sim.description.hand_joints)
        return lim["lower"], lim["upper"]

    def _palm_pose(self) -> np.ndarray:
        m, data = self.sim.model, self.sim.data
        with self.sim.lock:
            b = m.body(self.sim.description.profile.hand.palm_link).id
            T = np.eye(4)
            T[:3, :3] = data.xmat[b].reshape(3, 3)
            T[:3, 3] = data.xpos[b]
        return T

    def table_contacts(self) -> tuple[str, ...]:
        """Robot bodies touching the table (or floor) now."""
        m, data = self.sim.model, self.sim.data
        scene = {m.geom("table").id, m.geom("floor").id}
        out = set()
        with self.sim.lock:
            for c in data.contact[: data.ncon]:
                if (c.geom1 in scene) != (c.geom2 in scene):
                    other = c.geom2 if c.geom1 in scene else c.geom1
                    name = m.body(m.geom_bodyid[other]).name
                    if name != self.sim.cell.object.name:
                        out.add(name)
        return tuple(sorted(out))

    def touching_fingers(self) -> tuple[str, ...]:
        """Robot fingers (and 'palm') with a MuJoCo contact on the object now."""
        m, data = self.sim.model, self.sim.data
        obj = m.body(self.sim.cell.object.name).id
        out = set()
        with self.sim.lock:
            for c in data.contact[: data.ncon]:
                b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
                if obj not in (b1, b2):
                    continue
                other = m.body(b2 if b1 == obj else b1).name
                finger = finger_of_body(other, self.finger_links)
                if finger is not None:
                    out.add(finger)
        return tuple(sorted(out))


