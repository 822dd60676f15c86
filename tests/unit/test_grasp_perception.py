"""Grasp trials with the object pose from perception (issue 12's benchmark, dexstack/evaluation/grasp_perception.py):
the planning pose is measured in one rendered frame of the grasp cell's object, plans are made from it while the
physics keeps the true placement, and the policy's observed object pose is the feed's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dexstack.evaluation.grasp_perception import GraspPerception, InitialPose, PerceivedBatch, tilt_deg
from dexstack.grasp import baseline as baseline_module
from dexstack.grasp.baseline import TrialResult, UnreachableError
from dexstack.perception.geometry import pose_error
from dexstack.perception.objects import load_object_model
from dexstack.policies import load_policy
from dexstack.policies.grasp.bank import build_episodes, placement
from dexstack.policies.grasp.task import GraspTask
from dexstack.policies.tracking.task import Randomization
from dexstack.robot import load_description
from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix

ROOT = Path(__file__).resolve().parents[2]
OFFSET_M = np.array([0.02, -0.01, 0.0])  # a known perception error


@pytest.fixture(scope="module")
def description():
    return load_description("panda_allegro")


def _offset(T):
    out = np.array(T, dtype=float)
    out[:3, 3] += OFFSET_M
    return out


class _Record:
    """What ``build_episodes``' ``perceive`` returns (an :class:`InitialPose`'s ``T_base_object``)."""

    def __init__(self, T):
        self.T_base_object = T


def test_the_planning_pose_is_measured_on_the_grasp_cells_object(description):
    perception = GraspPerception(description, camera_hz=10.0)
    try:
        T = placement(np.random.default_rng(3), load_object_model("can").rest_height_m)  # somewhere on the table
        init = perception.initial("can", description.home(), T)
        assert init.feed.object_model.name == "can"  # the grasp cell's object, not the tabletop cell's cube
        assert init.perceived and init.frame.kind == "fresh"
        err_mm, _ = pose_error(init.T_base_object, T)
        assert err_mm < 3.0 and init.tilt_deg < 3.0
        assert not np.array_equal(init.T_base_object, T)  # measured, not copied from the simulator
        assert init.feed.next_frame_s == pytest.approx(0.1)  # it goes on tracking one camera period later
        assert init.row()["perceived"] is True
    finally:
        perception.close()


def test_the_seen_hand_turns_a_symmetric_objects_fitted_frame_to_its_own(description):
    """A can's yaw is unobservable: the fit's frame is arbitrary about its axis. With the human grasp given, the
    planning frame is the one the hand holds it in (the library grasp placed with it lands on the hand), the
    fitted position kept; and the policy's observed poses are turned the same way."""
    from dexstack.grasp.human_grasps import library
    from dexstack.transforms import transform_points

    kp = library("can")[0].keypoints_object_m
    perception = GraspPerception(description, camera_hz=10.0)
    try:
        T = placement(np.random.default_rng(3), load_object_model("can").rest_height_m)
        plain = perception.initial("can", description.home(), T)
        init = perception.initial("can", description.home(), T, kp)
    finally:
        perception.close()
    hand_base = transform_points(T, kp)

    def hand_miss_mm(T_plan):
        return 1e3 * np.max(np.linalg.norm(transform_points(T_plan, kp) - hand_base, axis=1))

    assert hand_miss_mm(init.T_base_object) < 5.0
    assert np.allclose(init.T_base_object[:3, 3], plain.T_base_object[:3, 3], atol=2e-3)  # the fit's position kept
    turned = init.turned_deg > 0.0  # (this placement's fit: 49 deg off about the can's axis)
    assert turned == (hand_miss_mm(plain.T_base_object) > 5.0)  # turned exactly when the fit's frame was not it
    if turned:
        assert np.allclose(plain.T_base_object @ init.frame_turn, init.T_base_object)
    # the policy's observations: the feed's poses in the turned frame, the truth (no pose yet) untouched
    turn = np.eye(4)
    turn[:3, :3] = rpy_to_matrix([0.0, 0.0, np.pi / 2])
    feed = _FakeFeed([0.5, 0.0, 0.06, 0.0, 0.0, 0.0, 1.0])
    batch = PerceivedBatch(_FakeBackend(1), [feed], period_s=0.05, turns=[turn])
    true = np.array([[0.5, 0.0, 0.06, 0, 0, 0, 1]], float)
    batch.reset(np.arange(1), np.zeros((1, 7)), true, np.ones(1), np.ones(1))
    assert np.allclose(batch.out["object_pose_obs"][0, 3:], matrix_to_quat_xyzw(turn[:3, :3]))
    feed.perceived = None
    batch.step(np.zeros((1, 7)))
    assert np.allclose(batch.out["object_pose_obs"][0], batch.out["object_pose"][0])


def test_tilt_ignores_a_turn_about_the_vertical():
    T = np.eye(4)
    turned = np.eye(4)
    turned[:3, :3] = rpy_to_matrix([0.0, 0.0, 1.0])
    tipped = np.eye(4)
    tipped[:3, :3] = rpy_to_matrix([0.2, 0.0, 0.0])
    assert tilt_deg(turned, T) == pytest.approx(0.0, abs=1e-6)
    assert tilt_deg(tipped, T) == pytest.approx(np.degrees(0.2))


def test_episodes_are_planned_from_the_perceived_pose_and_the_physics_gets_the_true_one(description):
    seen = []

    def perceive(name, T_true, keypoints_object_m):
        seen.append((name, T_true.copy()))
        return _Record(_offset(T_true))

    episodes, counts = build_episodes(["can"], 1, 0, description, perceive=perceive)
    assert episodes and len(seen) == counts["planned"] + counts["unreachable"]
    sim_episodes, _ = build_episodes(["can"], 1, 0, description)  # the same placements, planned from the truth
    for e, s in zip(episodes, sim_episodes):
        assert np.allclose(e.T_base_object_true, s.plan.T_base_object)  # same seeded placement
        assert np.allclose(e.plan.T_base_object[:3, 3], s.plan.T_base_object[:3, 3] + OFFSET_M)
        assert np.allclose(e.plan.reference.object_pose[0, :3], e.plan.T_base_object[:3, 3])
        assert not np.allclose(e.plan.arm_rad["grasp"], s.plan.arm_rad["grasp"])  # the arm goes elsewhere
    policy = load_policy("fungrasp_allegro", description)
    task = GraspTask(policy.manifest, description, episodes, randomization=Randomization.none())
    state = task.new_state(len(episodes))
    start = task.reset(state, torch.arange(len(episodes)), None, ref=torch.arange(len(episodes)))
    for k, e in enumerate(episodes):  # the object where it is, not where perception put it
        assert np.allclose(start["object_pose"][k, :3].numpy(), e.T_base_object_true[:3, 3], atol=1e-6)
        assert float(state.z0[k]) == pytest.approx(e.T_base_object_true[2, 3], abs=1e-6)


def test_a_placement_perception_gives_no_pose_is_not_planned_and_counted(description):
    episodes, counts = build_episodes(["can"], 1, 0, description, perceive=lambda name, T, kp: _Record(None))
    assert episodes == [] and counts["unperceived"] >= 1 and counts["planned"] == 0


def test_the_open_loop_baseline_plans_from_the_given_pose(monkeypatch):
    from dexstack.sim.cell import SimCell
    from dexstack.sim.config import load_cell_config, with_object

    planned = []

    def fake_plan_arm(ik, target, T_base_object, *args, **kwargs):
        planned.append(np.array(T_base_object))
        raise UnreachableError("stop here")

    monkeypatch.setattr(baseline_module, "plan_arm", fake_plan_arm)
    sim = SimCell(with_object(load_cell_config("tabletop_grasp"), "can"), with_camera=False)
    grasp = baseline_module.OpenLoopGrasp(sim)
    given = _offset(sim.object_pose())
    with pytest.raises(UnreachableError):
        grasp.run(target=None, T_base_object=given)
    with pytest.raises(UnreachableError):
        grasp.run(target=None)
    assert np.allclose(planned[0], given) and np.allclose(planned[1], sim.object_pose())


class _FakeFeed:
    camera_hz = 10.0

    def __init__(self, pose):
        self.pose, self.calls = np.asarray(pose, dtype=float), []
        self.perceived = self.pose  # a pose measured (None: the feed hands out the truth)

    def __call__(self, now_s, q, dq, obj):
        self.calls.append((now_s, obj.copy()))
        return self.pose if self.perceived is not None else obj


class _FakeBackend:
    def __init__(self, n):
        self.n_envs, self.description, self.unstable_count = n, None, 0
        self.out = {k: np.zeros((n, 7)) for k in ("q", "dq", "object_pose", "object_pose_obs")}

    def reset(self, ids, q, object_pose, friction_scale, mass_scale):
        self.out["object_pose"][ids] = object_pose
        self.out["object_pose_obs"][ids] = object_pose

    def step(self, targets):
        self.out["object_pose"][:, 0] += 0.001
        self.out["object_pose_obs"][:] = self.out["object_pose"]
        return self.out


def test_the_policy_observes_the_feeds_pose_and_the_truth_stays(description):
    true = np.array([[0.5, 0.0, 0.06, 0, 0, 0, 1], [0.45, 0.05, 0.06, 0, 0, 0, 1]], float)
    perceived = [0.52, -0.01, 0.06, *matrix_to_quat_xyzw(rpy_to_matrix([0, 0, 0.3]))]
    feed = _FakeFeed(perceived)
    batch = PerceivedBatch(_FakeBackend(2), [feed, None], period_s=0.05)
    batch.reset(np.arange(2), np.zeros((2, 7)), true, np.ones(2), np.ones(2))
    assert np.allclose(batch.out["object_pose_obs"][0], perceived)
    assert np.allclose(batch.out["object_pose_obs"][1], true[1])  # no feed: the backend's own
    out = batch.step(np.zeros((2, 7)))
    assert np.allclose(out["object_pose_obs"][0], perceived) and np.allclose(out["object_pose"][0, 0], 0.501)
    assert [round(t, 6) for t, _ in feed.calls] == [0.1, 0.15]  # one camera period after the planning frame
    assert np.allclose(feed.calls[-1][1][0], 0.501)  # the feed renders the true scene
    with pytest.raises(ValueError, match="feeds"):
        PerceivedBatch(_FakeBackend(2), [feed], period_s=0.05)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_grasp", ROOT / "bench" / "grasp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakePerception:
    """GraspPerception that 'measures' the truth moved by OFFSET_M."""

    made = []

    def __init__(self, description, camera_hz=15.0):
        self.calls = []
        _FakePerception.made.append(self)

    def initial(self, name, q, T_true, keypoints_object_m=None):
        from dexstack.evaluation.perception_feed import FeedFrame

        self.calls.append((name, np.array(T_true)))
        T = _offset(T_true)
        frame = FeedFrame(0.0, "fresh", np.array(T_true), np.eye(4), T, 1000 * float(np.linalg.norm(OFFSET_M)),
                          0.0, "coarse", "", "")
        return InitialPose(name, T, np.array(T_true), frame, None, 0.0)

    def close(self):
        pass


def test_the_bench_plans_the_kinematic_trials_from_the_perceived_pose(monkeypatch, capsys):
    import dexstack.evaluation.grasp_perception as gp

    bench = _bench()
    runs = []

    def fake_run(self, target, human_fingers=None, T_base_object=None):
        runs.append((np.array(self.sim.object_pose()), T_base_object))
        return TrialResult(False, 0.0, 0.0, (), 0.0, 0)

    monkeypatch.setattr(gp, "GraspPerception", _FakePerception)
    monkeypatch.setattr(bench.OpenLoopGrasp, "run", fake_run)
    _FakePerception.made.clear()
    assert bench.main(["--objects", "can", "--poses", "1", "--policy", "", "--no-verify"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    perception = _FakePerception.made[0]
    assert runs and len(runs) == len(perception.calls)
    for (T_sim, T_plan), (_, T_seen) in zip(runs, perception.calls):
        assert np.allclose(T_seen, T_sim)  # perception saw the settled object
        assert np.allclose(T_plan[:3, 3], T_sim[:3, 3] + OFFSET_M)  # and the plan used what it measured
    assert line["object_pose"] == "perception"
    assert line["perception"]["kinematic_initial"]["err_mm"]["median"] == pytest.approx(22.36, abs=0.01)
    assert "kinematic_success" in line and "heldout_success" in line

    runs.clear()
    assert bench.main(["--objects", "can", "--poses", "1", "--policy", "", "--no-verify",
                       "--object-pose", "sim"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert runs and all(T_plan is None for _, T_plan in runs) and "perception" not in line
