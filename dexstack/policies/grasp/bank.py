"""Grasp episodes for training and evaluation: object x human grasp x placement -> retargeted target + plan.

The targets come from retargeting the synthetic human grasps of the library (``config/grasps/``, made with the
rendered hand's kinematics), so no image is needed in training. Each human grasp is retargeted once (its object
frame target does not depend on the placement; with a verifier, the first of several retargeting candidates that
lifts the object in a simulated check, :mod:`dexstack.grasp.verify`); each placement on the table (position and
yaw, seeded, the ranges of ``bench/grasp.py``) gets its arm plan (:func:`dexstack.grasp.episode.plan_grasp`).
Placements the arm cannot reach are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.grasp.baseline import UnreachableError
from dexstack.grasp.episode import GraspPhases, GraspPlan, plan_grasp
from dexstack.grasp.human_grasps import library
from dexstack.grasp.verify import VerifiedRetargeter
from dexstack.perception.objects import load_object_model
from dexstack.retarget.arm import ArmIK, ArmIKConfig
from dexstack.retarget.functional import FunctionalRetargeter, GraspRetargetError, GraspTarget
from dexstack.robot.description import RobotDescription
from dexstack.transforms import rpy_to_matrix

PLACEMENT_CENTER_XY_M = (0.5, 0.0)
PLACEMENT_HALF_RANGE_XY_M = (0.05, 0.08)
PLACEMENT_HALF_RANGE_YAW_RAD = 0.3


@dataclass(frozen=True)
class GraspEpisode:
    object_name: str
    kind: str  # the human grasp's kind (side_power, top_precision)
    target: GraspTarget
    plan: GraspPlan  # planned from the object pose the robot was given (perceived, or the placement)
    T_base_object_true: np.ndarray | None = None  # where the object is (None: where the plan says)
    perception: object = None  # with ``perceive``: its record of the planning pose (bench/grasp.py)


def placement(rng: np.random.Generator, rest_height_m: float) -> np.ndarray:
    """T_base_object of a random placement on the table (``rest_height_m``: the object's
    :attr:`~dexstack.perception.objects.ObjectModel.rest_height_m`)."""
    c, h = np.asarray(PLACEMENT_CENTER_XY_M), np.asarray(PLACEMENT_HALF_RANGE_XY_M)
    xy = c + rng.uniform(-h, h)
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix([0.0, 0.0, rng.uniform(-PLACEMENT_HALF_RANGE_YAW_RAD, PLACEMENT_HALF_RANGE_YAW_RAD)])
    T[:3, 3] = (*xy, rest_height_m)
    return T


def library_placements(objects: list[str], placements: int, seed: int) -> list[tuple[str, int, int, np.ndarray]]:
    """(object, library grasp index, placement index, T_base_object) of every library grasp of ``objects`` x
    ``placements``, in :func:`build_episodes`' order and from its random stream: the placements it plans for ``seed``
    (for the launched graph's benchmark, ``bench/deployed_grasp.py``, to place the object where the in-process
    benchmark did)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in objects:
        rest_height_m = load_object_model(name).rest_height_m
        for g, _grasp in enumerate(library(name)):
            out.extend((name, g, k, placement(rng, rest_height_m)) for k in range(placements))
    return out


def retarget_resting(model, keypoints_object_m: np.ndarray, retargeter: FunctionalRetargeter,
                     verifier: VerifiedRetargeter | None = None) -> tuple[GraspTarget, bool]:
    """(target, verified) of a human grasp of ``model`` standing on the table (its plane at
    ``-model.rest_height_m`` in the object frame): ``verifier``'s first candidate that lifts, or ``retargeter``'s
    solution. What the training bank and ``bench/grasp.py`` plan; raises GraspRetargetError."""
    if verifier is not None:
        checked = verifier.retarget(model, keypoints_object_m, table_z_m=-model.rest_height_m)
        return checked.target, bool(checked.verified)
    return retargeter.retarget(model, keypoints_object_m, table_z_m=-model.rest_height_m), False


def build_episodes(objects: list[str], placements: int, seed: int, description: RobotDescription,
                   phases: GraspPhases | None = None, retargeter: FunctionalRetargeter | None = None,
                   log=None, verifier: VerifiedRetargeter | None = None,
                   perceive=None) -> tuple[list[GraspEpisode], dict]:
    """Episodes of ``objects`` (every library grasp x ``placements``); returns (episodes, counts).

    ``verifier``: the retargeting candidates checked by the open-loop grasp in the sim
    (:mod:`dexstack.grasp.verify`, as the trainer and ``bench/grasp.py`` use); None: the plain ``retargeter``.
    ``perceive(object_name, T_base_object_true, keypoints_object_m) -> record``: the object pose to plan from
    (perception's, the human grasp's keypoints given to choose among a symmetric object's frames,
    :meth:`dexstack.evaluation.grasp_perception.GraspPerception.initial`: ``record.T_base_object``, None when the
    frame gave none: the placement is skipped and counted in ``unperceived``); the episode keeps the true placement
    (``T_base_object_true``, where the physics puts the object) and the record."""
    from dexstack.safety.gate import SafetyGate, load_safety_config  # noqa: PLC0415

    where = {(name, g, k): T for name, g, k, T in library_placements(objects, placements, seed)}
    retargeter = retargeter or FunctionalRetargeter(description=description)
    ik = ArmIK(description, ArmIKConfig(max_iterations=200, posture_weight=1e-4))
    gate = SafetyGate(description, load_safety_config())
    n_arm = len(description.arm_joints)
    episodes, counts = [], {"unreachable": 0, "retarget_failed": 0, "planned": 0, "verified_grasps": 0,
                        "unperceived": 0}
    for name in objects:
        model = load_object_model(name)
        for g, grasp in enumerate(library(name)):
            try:
                target, verified = retarget_resting(model, grasp.keypoints_object_m, retargeter, verifier)
                counts["verified_grasps"] += verified
            except GraspRetargetError as exc:
                counts["retarget_failed"] += placements
                if log:
                    log(f"{name} {grasp.kind}: {exc}")
                continue
            for k in range(placements):
                T = where[(name, g, k)]
                record, T_plan = None, T
                if perceive is not None:
                    record = perceive(name, T, grasp.keypoints_object_m)
                    if record.T_base_object is None:
                        counts["unperceived"] += 1
                        continue
                    T_plan = record.T_base_object
                try:
                    plan = plan_grasp(target, T_plan, description.home(), ik, description, phases,
                                      collision_m=lambda qa, qh: gate.collision_violation_m(np.concatenate((qa, qh))),
                                      name=f"{name}_{grasp.kind}_{k}")
                except UnreachableError:
                    counts["unreachable"] += 1
                    continue
                assert plan.reference.q_rad.shape[1] == n_arm + len(description.hand_joints)
                episodes.append(GraspEpisode(name, grasp.kind, target, plan,
                                             None if perceive is None else T, record))
                counts["planned"] += 1
    return episodes, counts
