"""Retargeting candidates checked in the sim (dexstack/grasp/verify.py): order, stop, fallback, memo, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.grasp.human_grasps import library
from dexstack.grasp.verify import VerifiedRetargeter, VerifyConfig
from dexstack.perception.objects import load_object_model
from dexstack.retarget.functional import FunctionalRetargetConfig, FunctionalRetargeter, GraspRetargetError

CONFIG = VerifyConfig(start_rotations_deg=((0.0, 0.0, 0.0), (20.0, 0.0, 0.0), (0.0, 0.0, -20.0)),
                      table_clearances_m=(0.025, 0.015), max_candidates=6)


class CountingTrial:
    """Lifts from the ``lift_at``-th call on (None: never); records the targets it was given."""

    def __init__(self, lift_at: int | None):
        self.lift_at, self.targets = lift_at, []

    def __call__(self, model, target):
        self.targets.append(target)
        return (self.lift_at is not None and len(self.targets) >= self.lift_at), "squeezed out (fake)"


def _rod():
    model = load_object_model("rod")
    return model, library("rod")[-1].keypoints_object_m, -model.extents_m[2] / 2


def test_keeps_the_first_candidate_that_lifts_in_order():
    model, kp, table_z = _rod()
    trial = CountingTrial(lift_at=5)
    result = VerifiedRetargeter(CONFIG, trial=trial).retarget(model, kp, table_z)
    assert result.verified and result.candidates_tried == 5 and result.candidate == 4
    assert len(result.reasons) == 4 and all("squeezed out" in r for r in result.reasons)
    # candidate 4 = the second margin (15 mm) from the second start rotation
    direct = FunctionalRetargeter(FunctionalRetargetConfig(table_clearance_m=0.015)).retarget(
        model, kp, table_z_m=table_z, start_rotvec_palm_rad=np.radians(CONFIG.start_rotations_deg[1]))
    assert np.allclose(result.target.T_object_palm, direct.T_object_palm, atol=1e-9)
    assert np.allclose(result.target.q_hand_rad, direct.q_hand_rad, atol=1e-9)
    # the candidates differ: another start ends in another optimum
    starts = {tuple(np.round(t.T_object_palm[:3, 3], 4)) for t in trial.targets}
    assert len(starts) >= 2


def test_falls_back_to_the_plain_retargeting_unverified_and_memoises():
    model, kp, table_z = _rod()
    trial = CountingTrial(lift_at=None)
    verifier = VerifiedRetargeter(CONFIG, trial=trial)
    result = verifier.retarget(model, kp, table_z)
    plain = FunctionalRetargeter().retarget(model, kp, table_z_m=table_z)
    assert not result.verified and result.candidate == 0 and result.candidates_tried == CONFIG.max_candidates
    assert np.allclose(result.target.T_object_palm, plain.T_object_palm, atol=1e-9)
    again = verifier.retarget(model, kp, table_z)
    assert again is result and len(trial.targets) == CONFIG.max_candidates  # not checked twice


def test_refusals_still_name_the_cause():
    model, kp, table_z = _rod()
    with pytest.raises(GraspRetargetError, match="not touching"):
        VerifiedRetargeter(CONFIG, trial=CountingTrial(1)).retarget(model, kp + [0.0, 0.0, 0.4], table_z)
    with pytest.raises(ValueError, match="at least one start"):
        VerifyConfig(start_rotations_deg=())


def test_sim_check_lifts_the_can_with_the_plain_side_grasp():
    """The default check (open-loop grasp in the MuJoCo grasp cell): the can's side wrap lifts at the first try."""
    model = load_object_model("can")
    grasp = next(g for g in library("can") if g.kind == "side_power")
    result = VerifiedRetargeter(CONFIG).retarget(model, grasp.keypoints_object_m, -model.extents_m[2] / 2 - 1e-4)
    assert result.verified and result.candidate == 0 and result.candidates_tried == 1
