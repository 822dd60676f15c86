"""A grasp episode as a joint-space reference: reach -> approach -> close -> lift -> hold (FunGrasp's phases).

The grasp policy (policy type ``grasp``) outputs residuals around this reference, as the tracking policies do
around theirs, so with a zero residual it is the open-loop baseline (:mod:`dexstack.grasp.baseline`): the arm
goals are the baseline's (:func:`~dexstack.grasp.baseline.plan_arm`: pinocchio IK of the pre-grasp, grasp and
lifted palm poses, one IK branch, the gate's collision check), the hand goes from the pre-grasp to the target
joints plus ``flex_rad`` of flexion (a position-controlled hand must be told to press). Knots are joined linearly
in joint space; the reference's object pose rests until the close ends, then rises ``lift_m`` with the palm.

Times are seconds from the start of the reach; training episodes start at :attr:`GraspPhases.t_pregrasp_s`
(robot at the pre-grasp, object at rest: the free-space reach teaches nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.grasp.baseline import BaselineConfig, plan_arm
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.retarget.arm import ArmIK
from dexstack.retarget.functional import GraspTarget
from dexstack.robot.description import RobotDescription
from dexstack.transforms import matrix_to_quat_xyzw


@dataclass(frozen=True)
class GraspPhases:
    reach_s: float = 2.5
    approach_s: float = 1.0
    close_s: float = 1.5
    lift_s: float = 1.5
    hold_s: float = 2.0
    lift_m: float = 0.10
    flex_rad: float = 0.5  # the baseline's press: flexion added to every finger flexion joint at the close

    def __post_init__(self) -> None:
        for name in ("reach_s", "approach_s", "close_s", "lift_s", "hold_s", "lift_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GraspPhases.{name} must be positive")
        if self.flex_rad < 0:
            raise ValueError("GraspPhases.flex_rad must be >= 0")

    @property
    def t_pregrasp_s(self) -> float:
        return self.reach_s

    @property
    def t_close_s(self) -> float:
        return self.reach_s + self.approach_s

    @property
    def t_lift_s(self) -> float:
        return self.t_close_s + self.close_s

    @property
    def t_hold_s(self) -> float:
        return self.t_lift_s + self.lift_s

    @property
    def duration_s(self) -> float:
        return self.t_hold_s + self.hold_s


def flexion_mask(description: RobotDescription) -> np.ndarray:
    """1 on the Allegro finger flexion joints (not the abductions, not the thumb's rotation), hand joint order."""
    return np.array([not j.endswith(("_0.0", "_4.0", "_8.0", "_12.0")) for j in description.hand_joints], float)


@dataclass(frozen=True)
class GraspPlan:
    reference: ReferenceTrajectory  # full robot joints + object pose, from the reach's start
    arm_rad: dict[str, np.ndarray]  # pre-grasp, grasp, lift arm joints
    q_hand_closed_rad: np.ndarray
    T_base_object: np.ndarray


def plan_grasp(target: GraspTarget, T_base_object: np.ndarray, q_start_rad: np.ndarray, ik: ArmIK,
               description: RobotDescription, phases: GraspPhases | None = None, collision_m=None,
               name: str = "") -> GraspPlan:
    """The reference of one grasp episode from the robot at ``q_start_rad`` (full joints). Raises
    :class:`~dexstack.grasp.baseline.UnreachableError` (naming the pose) when the arm cannot do it."""
    ph = phases or GraspPhases()
    n_arm = len(description.arm_joints)
    q_start = np.asarray(q_start_rad, dtype=float)
    plan = plan_arm(ik, target, T_base_object, q_start[:n_arm], ph.lift_m, BaselineConfig(),
                    collision_m=collision_m)
    lim = description.limit_arrays(description.hand_joints)
    closed = np.clip(target.q_hand_rad + ph.flex_rad * flexion_mask(description), lim["lower"], lim["upper"])
    knots = [(0.0, q_start[:n_arm], q_start[n_arm:]),
             (ph.t_pregrasp_s, plan["pre-grasp"], target.q_pregrasp_rad),
             (ph.t_close_s, plan["grasp"], target.q_pregrasp_rad),
             (ph.t_lift_s, plan["grasp"], closed),
             (ph.t_hold_s, plan["lift"], closed),
             (ph.duration_s, plan["lift"], closed)]
    times = np.array([k[0] for k in knots])
    q = np.array([np.concatenate([a, h]) for _, a, h in knots])
    rest = np.concatenate([T_base_object[:3, 3], matrix_to_quat_xyzw(T_base_object[:3, :3])])
    lifted = rest.copy()
    lifted[2] += ph.lift_m
    pose = np.array([rest, rest, rest, rest, lifted, lifted])
    ref = ReferenceTrajectory(times, q, pose, name=name or f"grasp_{target.object_name}", kind="grasp",
                              robot_profile=description.profile.name)
    return GraspPlan(ref, plan, closed, np.asarray(T_base_object, dtype=float))
