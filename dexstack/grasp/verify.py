"""Retarget a human grasp to several robot candidates and keep the first that lifts in a simulated check.

The functional retargeting (:class:`~dexstack.retarget.functional.FunctionalRetargeter`) is a local least-squares
fit with many optima: the same human grasp started from a slightly turned palm, or with a smaller finger-table
margin, ends in robot grasps that all match the human contacts (contact_match 1.0) but of which some lift the object
and some squeeze it out of the hand. Measured on the 11 training-object library grasps (one placement each, 7
starts): the outcome of one candidate is nearly always the same at every placement of the object (3 of 3 or 0 of 3
in the kinematic bench) but changes from candidate to candidate, and no cheap geometric score (fit cost, net contact
normal, palm rotation from the human's) told the good ones apart. So each candidate is tried the way it will be
executed: the open-loop grasp (:class:`~dexstack.grasp.baseline.OpenLoopGrasp`, full safety gate) in the MuJoCo
grasp cell with the object at a nominal placement in front of the robot (not the placement the grasp is for: the
choice is of an object-frame target), and the first that lifts is kept (~2 s per candidate on one core). When none
lifts, the first candidate (the plain retargeting) is returned, marked unverified.

The check uses the same simulator the benchmark measures in: its gain there is an upper bound of what it gives on a
real robot, where the model of the object (mass, friction) is less exact.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dexstack.control.commands import CommandError
from dexstack.grasp.baseline import BaselineConfig, OpenLoopGrasp, UnreachableError
from dexstack.perception.objects import ObjectModel
from dexstack.retarget.functional import FunctionalRetargetConfig, FunctionalRetargeter, GraspRetargetError, GraspTarget
from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix


@dataclass(frozen=True)
class VerifyConfig:
    # Starts of the retargeting: the human's palm pose turned about the palm's own axes (x: palm normal, y: across
    # the palm, z: along the fingers), degrees; each start is tried with each finger-table margin.
    start_rotations_deg: tuple[tuple[float, float, float], ...] = (
        (0.0, 0.0, 0.0), (20.0, 0.0, 0.0), (-20.0, 0.0, 0.0), (0.0, 0.0, 20.0), (0.0, 0.0, -20.0),
        (0.0, 20.0, 0.0), (0.0, -20.0, 0.0))
    # FunctionalRetargetConfig.table_clearance_m values: the retargeting's 25 mm keeps fingertips over the equator
    # of a small round object; 15 mm lets them reach lower (the gate allows finger capsules 30 mm into the table)
    table_clearances_m: tuple[float, ...] = (0.025, 0.015)
    placement_xyz_yaw: tuple[float, float, float] = (0.5, 0.0, 0.0)  # nominal object placement (base frame, m, rad)
    max_candidates: int = 14

    def __post_init__(self) -> None:
        if not self.start_rotations_deg or not self.table_clearances_m:
            raise ValueError("VerifyConfig needs at least one start rotation and one table clearance")
        if self.max_candidates < 1:
            raise ValueError("VerifyConfig.max_candidates must be >= 1")


@dataclass(frozen=True)
class VerifiedTarget:
    target: GraspTarget
    verified: bool  # the target lifted the object in the simulated check
    candidates_tried: int
    candidate: int  # index of the kept candidate in the tried order
    verify_ms: float
    reasons: tuple[str, ...]  # why each tried candidate before the kept one was not kept


# (object model, object-frame target) -> (lifted, why not)
Trial = Callable[[ObjectModel, GraspTarget], tuple[bool, str]]


class VerifiedRetargeter:
    """Candidates of :class:`FunctionalRetargeter` checked by ``trial`` (default: the open-loop grasp in the sim)."""

    def __init__(self, config: VerifyConfig | None = None, retarget_config: FunctionalRetargetConfig | None = None,
                 trial: Trial | None = None, cell: str = "tabletop_grasp"):
        self.config = config or VerifyConfig()
        base = retarget_config or FunctionalRetargetConfig()
        # one retargeter per finger-table margin (replacing base's), sharing the robot description
        self.retargeters: list[FunctionalRetargeter] = []
        for clearance in self.config.table_clearances_m:
            shared = self.retargeters[0].description if self.retargeters else None
            self.retargeters.append(FunctionalRetargeter(dataclasses.replace(base, table_clearance_m=clearance),
                                                         shared))
        self.trial = trial or SimTrial(self.config, cell, base.finger_links)
        # the same human grasp (object, keypoints, table) gives the same answer: the benchmark and the training
        # bank ask for each library grasp at every placement
        self._memo: dict[tuple, VerifiedTarget] = {}

    def retarget(self, model: ObjectModel, keypoints_object_m: np.ndarray, table_z_m: float) -> VerifiedTarget:
        """The first candidate that lifts ``model``; the plain retargeting (unverified) when none does.
        :class:`GraspRetargetError` when no candidate retargets at all (the plain retargeting's reason)."""
        key = (model.name, np.asarray(keypoints_object_m, dtype=float).tobytes(), float(table_z_m))
        if key not in self._memo:
            self._memo[key] = self._retarget(model, keypoints_object_m, table_z_m)
        return self._memo[key]

    def _retarget(self, model: ObjectModel, keypoints_object_m: np.ndarray, table_z_m: float) -> VerifiedTarget:
        t0 = time.perf_counter()
        first: GraspTarget | None = None
        first_error: GraspRetargetError | None = None
        reasons: list[str] = []
        tried = 0
        for k, (retargeter, rotation_deg) in enumerate(self._starts()):
            if tried >= self.config.max_candidates:
                break
            try:
                target = retargeter.retarget(model, keypoints_object_m, table_z_m=table_z_m,
                                             start_rotvec_palm_rad=np.radians(rotation_deg))
            except GraspRetargetError as exc:
                first_error = first_error or exc
                reasons.append(f"candidate {k}: {exc}")
                continue
            first = first or target
            tried += 1
            lifted, why = self.trial(model, target)
            if lifted:
                return VerifiedTarget(target, True, tried, k, 1000.0 * (time.perf_counter() - t0), tuple(reasons))
            reasons.append(f"candidate {k}: {why}")
        if first is None:
            raise first_error or GraspRetargetError(f"no candidate retargeting of '{model.name}'")
        return VerifiedTarget(first, False, tried, 0, 1000.0 * (time.perf_counter() - t0), tuple(reasons))

    def _starts(self):
        for retargeter in self.retargeters:
            for rotation in self.config.start_rotations_deg:
                yield retargeter, np.asarray(rotation, dtype=float)


class SimTrial:
    """The open-loop grasp of a target in a fresh-state MuJoCo grasp cell, the object at the nominal placement."""

    def __init__(self, config: VerifyConfig, cell: str, finger_links: dict[str, tuple[str, ...]],
                 baseline: BaselineConfig | None = None):
        self.config, self.cell_name, self.finger_links = config, cell, finger_links
        self.baseline = baseline or BaselineConfig()
        self._sims: dict[str, OpenLoopGrasp] = {}

    def __call__(self, model: ObjectModel, target: GraspTarget) -> tuple[bool, str]:
        from dexstack.sim.cell import SimCell  # noqa: PLC0415 (MuJoCo only when a check runs)
        from dexstack.sim.config import load_cell_config, with_object  # noqa: PLC0415

        grasp = self._sims.get(model.name)
        if grasp is None:
            sim = SimCell(with_object(load_cell_config(self.cell_name), model.name), with_camera=False)
            grasp = self._sims[model.name] = OpenLoopGrasp(sim, self.baseline, finger_links=self.finger_links)
        x, y, yaw = self.config.placement_xyz_yaw
        z = model.rest_height_m
        grasp.sim.place_object([x, y, z, *matrix_to_quat_xyzw(rpy_to_matrix([0.0, 0.0, yaw]))])
        grasp.sim.reset()
        grasp.sim.step(200)  # settle
        try:
            result = grasp.run(target)
        except (UnreachableError, CommandError) as exc:  # CommandError: the gate refused a command
            return False, f"arm plan: {exc}"
        if result.success:
            return True, ""
        return False, f"rose {1000 * result.rise_m:.0f} mm, slipped {1000 * result.slip_m:.0f} mm"
