"""Grasp policy (issue 12 items 4-5): the batched grasp task's reward terms and success on hand-made states, its
observation against the runtime's field by field, the episode plan, policy type ``grasp`` (targets refused like a
swap), a tiny teacher/student training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from dexstack.grasp.episode import GraspPhases
from dexstack.grasp.from_frame import target_to_dict
from dexstack.policies import PolicyError, RobotState, StepContext, load_policy
from dexstack.policies.grasp.bank import build_episodes, library_placements
from dexstack.policies.grasp.env import History, VecGraspEnv
from dexstack.policies.grasp.physics import MultiObjectBatch
from dexstack.policies.grasp.task import GraspMeasured, GraspTask, GraspTaskConfig, link_weights, quat_apply
from dexstack.policies.grasp.trainer import grasp_manifest
from dexstack.policies.manifest import parse_manifest
from dexstack.policies.tracking.cpu_backend import CommandPath
from dexstack.policies.tracking.task import Randomization
from dexstack.robot import load_description
from dexstack.transforms import matrix_to_quat_xyzw

PERIOD_S = 0.05


@pytest.fixture(scope="module")
def description():
    return load_description("panda_allegro")


@pytest.fixture(scope="module")
def episodes(description):
    eps, counts = build_episodes(["can"], 1, 0, description)
    assert counts["planned"] == len(eps) >= 2  # the can has a side power and a top precision grasp
    return eps


def test_episodes_are_planned_at_the_library_placements(episodes):
    """bench/deployed_grasp.py places the launched graph's object by library_placements: the same poses."""
    where = library_placements(["can"], 1, 0)
    assert len(where) == len(episodes)
    for (name, _g, k, T), e in zip(where, episodes):
        assert (name, k) == (e.object_name, 0)
        np.testing.assert_array_equal(e.plan.T_base_object, T)
    assert not np.allclose(where[0][3], where[1][3])  # drawn, not one pose


def _manifest(description, episodes, teacher: bool):
    n_links = len(episodes[0].target.link_names)
    return grasp_manifest(len(description.arm_joints), len(description.hand_joints), n_links, teacher,
                          hidden=(16,), history=2)


@pytest.fixture(scope="module")
def task(description, episodes):
    return GraspTask(parse_manifest(_manifest(description, episodes, True)), description, episodes[:1],
                     GraspTaskConfig(), Randomization.none())


@pytest.mark.parametrize("start", ["pregrasp", "reach"])
def test_episodes_start_at_the_pre_grasp_or_at_home_with_the_reach(description, episodes, start):
    """start="reach" runs the episode as the launched graph does (robot at home, the reach included)."""
    task = GraspTask(parse_manifest(_manifest(description, episodes, True)), description, episodes[:1],
                     GraspTaskConfig(start=start), Randomization.none())
    state = task.new_state(2)
    out = task.reset(state, torch.arange(2), None, ref=torch.zeros(2, dtype=torch.long))
    ph, ref = task.grasp.phases, episodes[0].plan.reference
    t0 = ph.t_pregrasp_s if start == "pregrasp" else 0.0
    assert torch.allclose(state.t_s, torch.full((2,), t0))
    np.testing.assert_allclose(out["q"][0].numpy(), ref.q_at(t0), atol=1e-5)
    if start == "reach":
        np.testing.assert_allclose(out["q"][0].numpy(), description.home(), atol=1e-5)
    # the residual acts from the pre-grasp on; during the reach the reference plays as it is (as deployed)
    m = GraspMeasured(q=out["q"], dq=torch.zeros_like(out["q"]), object_pose=out["object_pose"])
    raw = torch.full((2, task.action_size), 0.5)
    _, with_residual = task.targets(state, m, raw)
    _, without = task.targets(state, m, torch.zeros_like(raw))
    assert torch.equal(with_residual, without) == (start == "reach")
    with pytest.raises(ValueError, match="start must be"):
        GraspTaskConfig(start="lift")


def _perfect_state(task: GraspTask, episode) -> GraspMeasured:
    """Object where planned, palm at the target palm pose, every link at its target: the ideal grasp."""
    T_bo = episode.plan.T_base_object
    T_bp = T_bo @ episode.target.T_object_palm
    links = episode.target.link_positions_object_m @ T_bo[:3, :3].T + T_bo[:3, 3]
    q = torch.as_tensor(episode.plan.reference.q_at(task.grasp.phases.t_close_s), dtype=torch.float32)[None]

    def pose(T):
        return torch.as_tensor(np.concatenate([T[:3, 3], matrix_to_quat_xyzw(T[:3, :3])]), dtype=torch.float32)[None]

    L = len(episode.target.link_names)
    return GraspMeasured(q, torch.zeros_like(q), pose(T_bo), pose(T_bp),
                         torch.as_tensor(links, dtype=torch.float32)[None], torch.zeros(1, L))


def _state_at(task: GraspTask, t_s: float):
    state = task.new_state(1)
    task.reset(state, torch.tensor([0]), None, ref=torch.tensor([0]), t_s=torch.tensor([t_s - PERIOD_S]))
    return state


def _step(task, state, m, raw=None):
    raw = torch.zeros(1, task.action_size) if raw is None else raw
    return task.advance(state, m, raw, m.q)


def test_link_weights_are_fungrasps():
    names = ("link_14.0", "link_3.0_tip", "link_15.0_tip", "link_7.0_tip", "link_2.0")
    assert link_weights(names).tolist() == [1.0, 4.0, 6.0, 4.0, 1.0]


def test_reward_terms_on_hand_made_states(task, episodes):
    c, ph, ep = task.grasp, task.grasp.phases, episodes[0]
    mask = torch.as_tensor(ep.target.contact_mask)
    # the ideal grasp during the approach: link and wrist terms at their maximum, no contact terms yet
    m = _perfect_state(task, ep)
    state = _state_at(task, ph.t_close_s - 0.2)
    _step(task, state, m)
    p = state.parts
    assert p["links"].item() == pytest.approx(c.w_links, abs=1e-4)
    assert p["wrist"].item() == pytest.approx(c.w_wrist, abs=1e-4)
    assert p["contact"].item() == 0.0 and p["impulse"].item() == 0.0 and p["lift"].item() == 0.0
    # every link 1 cm off along the palm's x axis: e_links = 1 cm, exp(-k * 0.01)
    palm_x = quat_apply(m.palm[:, 3:], torch.tensor([[1.0, 0.0, 0.0]]))
    shifted = GraspMeasured(m.q, m.dq, m.object_pose, m.palm, m.links + 0.01 * palm_x[:, None], m.force)
    state = _state_at(task, ph.t_close_s - 0.2)
    _step(task, state, shifted)
    assert state.parts["e_links_m"].item() == pytest.approx(0.01, abs=1e-5)
    assert state.parts["links"].item() == pytest.approx(c.w_links * np.exp(-c.k_links * 0.01), abs=1e-4)
    # only the thumb tip 15 mm off: weighted mean = 6 * 15 mm / sum of weights
    k = list(ep.target.link_names).index("link_15.0_tip")
    links = m.links.clone()
    links[0, k] += 0.015 * palm_x[0]
    state = _state_at(task, ph.t_close_s - 0.2)
    _step(task, state, GraspMeasured(m.q, m.dq, m.object_pose, m.palm, links, m.force))
    w = link_weights(ep.target.link_names)
    assert state.parts["e_links_m"].item() == pytest.approx(6 * 0.015 / w.sum(), abs=1e-5)
    # contacts after the close: half of the target links touching with 2 N, one non-target link with 50 N
    force = torch.zeros_like(m.force)
    on = torch.nonzero(mask).flatten()
    force[0, on[: len(on) // 2]] = 2.0
    force[0, torch.nonzero(~mask).flatten()[0]] = 50.0
    state = _state_at(task, ph.t_close_s + 0.2)
    _step(task, state, GraspMeasured(m.q, m.dq, m.object_pose, m.palm, m.links, force))
    frac = (len(on) // 2) / len(on)
    assert state.parts["contact"].item() == pytest.approx(c.w_contact * frac, abs=1e-5)
    assert state.parts["impulse"].item() == pytest.approx(c.w_impulse * frac * 2.0 / c.impulse_cap_n, abs=1e-5)
    # forces above the cap count as the cap
    state = _state_at(task, ph.t_close_s + 0.2)
    _step(task, state, GraspMeasured(m.q, m.dq, m.object_pose, m.palm, m.links, 30.0 * mask[None].float()))
    assert state.parts["impulse"].item() == pytest.approx(c.w_impulse, abs=1e-5)
    assert state.parts["contact"].item() == pytest.approx(c.w_contact, abs=1e-5)


def test_velocity_penalties_and_lift_term(task, episodes):
    c, ph = task.grasp, task.grasp.phases
    m = _perfect_state(task, episodes[0])
    # before the lift: the object pushed 1 cm in one period = 0.2 m/s, the palm still
    state = _state_at(task, ph.t_close_s)
    _step(task, state, m)
    moved = m.object_pose.clone()
    moved[0, 0] += 0.01
    _step(task, state, GraspMeasured(m.q, m.dq, moved, m.palm, m.links, m.force))
    assert state.parts["object_vel"].item() == pytest.approx(-c.w_object_vel * 0.2, abs=1e-4)
    assert state.parts["wrist_vel"].item() == pytest.approx(0.0, abs=1e-6)
    # a contact blow-up flings the object 10 m in a period: the penalty saturates and the episode fails
    flung = m.object_pose.clone()
    flung[0, 0] += 10.0
    _, failed, _ = _step(task, state, GraspMeasured(m.q, m.dq, flung, m.palm, m.links, m.force))
    assert state.parts["object_vel"].item() == pytest.approx(-c.w_object_vel * c.max_vel_m_s, abs=1e-4)
    assert bool(failed)
    # in the lift: object and palm rise together (no slip, no penalty); the lift term follows the reference height
    state = _state_at(task, ph.t_lift_s + 0.5)
    _step(task, state, m)
    up = m.object_pose.clone()
    palm = m.palm.clone()
    up[0, 2] += 0.01
    palm[0, 2] += 0.01
    _step(task, state, GraspMeasured(m.q, m.dq, up, palm, m.links + torch.tensor([0.0, 0.0, 0.01]), m.force))
    assert state.parts["object_vel"].item() == pytest.approx(0.0, abs=1e-4)
    z_ref = episodes[0].plan.reference.object_pose_at(state.t_s.item())[2]
    expected = c.w_lift * np.exp(-c.k_lift * abs(up[0, 2].item() - z_ref))
    assert state.parts["lift"].item() == pytest.approx(expected, rel=1e-3)


def _lifted(m: GraspMeasured, dz: float, slip_x: float = 0.0) -> GraspMeasured:
    obj, palm = m.object_pose.clone(), m.palm.clone()
    obj[0, 2] += dz
    obj[0, 0] += slip_x
    palm[0, 2] += dz
    return GraspMeasured(m.q, m.dq, obj, palm, m.links, m.force)


@pytest.mark.parametrize("rise, slip, success", [(0.09, 0.0, True), (0.09, 0.015, True), (0.09, 0.03, False),
                                                 (0.07, 0.0, False)])
def test_success_needs_the_rise_and_little_slip_over_the_hold(task, episodes, rise, slip, success):
    ph = task.grasp.phases
    m = _perfect_state(task, episodes[0])
    state = _state_at(task, ph.t_hold_s)
    _, failed, timeout = _step(task, state, _lifted(m, rise))  # the hold starts: slip is measured from here
    assert not failed and not timeout
    state.t_s = torch.tensor([ph.duration_s - PERIOD_S])
    _, failed, timeout = _step(task, state, _lifted(m, rise, slip))
    assert bool(timeout) and not bool(failed)
    assert state.slip.item() == pytest.approx(slip, abs=1e-4)
    assert bool(task.success(state)) is success


def test_an_object_that_drops_back_or_falls_ends_the_episode_as_failed(task, episodes):
    ph = task.grasp.phases
    m = _perfect_state(task, episodes[0])
    state = _state_at(task, ph.t_hold_s + 0.5)
    _, failed, _ = _step(task, state, _lifted(m, 0.01))  # in the hold, only 1 cm up: dropped back
    assert bool(failed) and not bool(task.success(state))
    state = _state_at(task, ph.t_close_s + 0.2)
    _, failed, _ = _step(task, state, _lifted(m, -0.08))  # fell off the table
    assert bool(failed)
    state = _state_at(task, ph.t_close_s + 0.2)
    _, failed, _ = _step(task, state, m)
    assert not bool(failed)


def test_episode_plan_phases_and_object_reference(episodes, description):
    ep = episodes[0]
    ref, ph = ep.plan.reference, ep.plan.reference.times_s
    n_arm = len(description.arm_joints)
    p = GraspPhases()  # reach 2.5 s, approach 1 s, close 1.5 s, lift 1.5 s, hold 2 s
    assert ph.tolist() == pytest.approx([0.0, 2.5, 3.5, 5.0, 6.5, 8.5])
    assert ph.tolist() == pytest.approx([0.0, p.t_pregrasp_s, p.t_close_s, p.t_lift_s, p.t_hold_s, p.duration_s])
    q_pre = ref.q_at(p.t_pregrasp_s)
    assert np.allclose(q_pre[n_arm:], ep.target.q_pregrasp_rad)
    assert np.allclose(ref.q_at(p.t_close_s)[:n_arm], ep.plan.arm_rad["grasp"])  # approached, hand still open
    closed = ref.q_at(p.t_lift_s)[n_arm:]
    assert np.all(closed >= ep.target.q_hand_rad - 1e-9) and np.abs(closed - ep.target.q_hand_rad).max() > 0.2
    z0 = ep.plan.T_base_object[2, 3]
    assert ref.object_pose_at(p.t_lift_s)[2] == pytest.approx(z0)
    assert ref.object_pose_at(p.t_hold_s)[2] == pytest.approx(z0 + 0.1)


def test_batched_grasp_observation_equals_the_runtime_fields(description, episodes, tmp_path):
    """The trained layout and the deployed one: MuJoCo's palm/link poses vs pinocchio's, field by field."""
    bundle = _tiny_bundle(description, episodes, tmp_path)
    target = _target_file(episodes[0], tmp_path)
    policy = load_policy(str(bundle), description, reference=str(target))
    manifest = policy.manifest
    task = GraspTask(manifest, description, episodes[:1], GraspTaskConfig(), Randomization.none())
    backend = MultiObjectBatch(["can"], PERIOD_S, task.link_names, CommandPath.ideal("off", 0.005))
    env = VecGraspEnv(task, backend, auto_reset=False)
    obs = env.reset(torch.tensor([0]))[0].numpy()
    m = env.observed
    state = RobotState(q=m.q[0].double().numpy(), dq=m.dq[0].double().numpy(),
                       object_pose=m.object_pose[0].double().numpy())
    ctx = StepContext(state=state, t_s=0.0, period_s=PERIOD_S, reference=policy.reference,
                      last_target=state.q.copy())
    policy.reset(ctx)
    policy.act(ctx)  # anchors the run (the reach starts at the measured joints)
    t = task.grasp.phases.t_pregrasp_s
    ctx = StepContext(state=state, t_s=t, period_s=PERIOD_S, reference=policy.reference, last_target=state.q.copy())
    policy.act(ctx)
    ctx.last_action = np.zeros(policy.action.size)
    runtime = policy.observation.build(ctx)
    offset = 0
    for f in manifest.observation:
        a, b = obs[offset: offset + f.size], runtime[offset: offset + f.size]
        tol = 2e-3 if f.name in ("grasp_links", "grasp_palm") else 1e-4  # float32 vs float64, two FK codes
        assert np.allclose(a, b, atol=tol), f"{f.name}: batched {a[:6]} runtime {b[:6]}"
        offset += f.size


def _tiny_bundle(description, episodes, tmp_path, teacher: bool = False):
    from dexstack.policies.checkpoints import save_rl_games_checkpoint
    from dexstack.policies.manifest import write_manifest
    from dexstack.policies.networks import RlGamesActor

    data = _manifest(description, episodes, teacher)
    manifest = parse_manifest(data)
    n_obs = sum(f.size for f in manifest.observation) * (1 if teacher else 2)
    torch.manual_seed(0)
    actor = RlGamesActor(n_obs, (16,), len(description.joints), "elu")
    out = tmp_path / ("teacher" if teacher else "student")
    save_rl_games_checkpoint(out / "model.pt", actor, torch.zeros(n_obs), torch.ones(n_obs), torch.zeros(23))
    write_manifest(data, out)
    return out


def _target_file(episode, tmp_path, **change):
    data = target_to_dict(episode.target, episode.plan.T_base_object)
    data.update(change)
    path = tmp_path / f"target_{'_'.join(sorted(change)) or 'good'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_grasp_policy_waits_without_a_target_and_runs_the_reach_then_the_network(description, episodes, tmp_path):
    bundle = _tiny_bundle(description, episodes, tmp_path)
    waiting = load_policy(str(bundle), description)
    assert waiting.reference is None and "grasp_target" in waiting.needs
    q = description.home()
    ctx = StepContext(RobotState(q=q, dq=0 * q, object_pose=np.array([0.5, 0, 0.06, 0, 0, 0, 1.0])), 0.0, PERIOD_S)
    assert waiting.act(ctx) is None and waiting.status["phase"].startswith("waiting")
    # a target as JSON text (what the grasp_target node publishes) is the same as its file
    text = json.dumps(target_to_dict(episodes[0].target, episodes[0].plan.T_base_object))
    policy = load_policy(str(bundle), description, reference=text)
    ref = policy.reference
    pose = ref.object_pose_at(0.0)
    ctx = StepContext(RobotState(q=q, dq=0 * q, object_pose=pose), 0.0, PERIOD_S, ref, q.copy())
    policy.reset(ctx)
    out = policy.act(ctx)  # the reach: the reference itself, starting from the measured joints
    assert np.allclose(out.arm, policy.reference.q_at(PERIOD_S)[:7], atol=1e-9)
    assert policy.status["phase"] == "reach"
    ctx = StepContext(RobotState(q=ref.q_at(2.5), dq=0 * q, object_pose=pose), 2.5, PERIOD_S, ref, q.copy())
    out = policy.act(ctx)
    assert policy.status["phase"] == "grasp" and np.isfinite(out.hand).all()
    assert not np.allclose(out.hand, policy.reference.q_at(2.5 + PERIOD_S)[7:])  # the network's residual
    # perception loses the object behind the closing hand: the last pose is kept (static before the lift) ...
    blind = StepContext(RobotState(q=ref.q_at(2.55), dq=0 * q, object_pose=None), 2.55, PERIOD_S, ref, q.copy())
    assert policy.act(blind) is not None and policy.status["object_pose"].startswith("predicted")
    assert np.allclose(blind.state.object_pose, pose)
    # ... but not for ever
    late = StepContext(RobotState(q=ref.q_at(6.0), dq=0 * q, object_pose=None), 6.0, PERIOD_S, ref, q.copy())
    with pytest.raises(PolicyError, match="object pose is lost"):
        policy.act(late)
    # the object has moved since the target was made: nothing sent, the reason given
    moved = pose.copy()
    moved[0] += 0.05
    policy.reset(ctx)
    with pytest.raises(PolicyError, match="cm .* from where the grasp target was made"):
        policy.act(StepContext(RobotState(q=q, dq=0 * q, object_pose=moved), 0.0, PERIOD_S, ref, q.copy()))


def test_a_tracked_frame_turned_by_a_symmetry_is_taken_and_a_real_turn_refused(description, episodes, tmp_path):
    """The object pose node may fit a can in another of its equivalent frames than grasp_target did: a turn about
    its axis is a symmetry, and the tracked poses are then expressed in the target's frame; a can tipped by the
    same angle is a different pose and is refused."""
    from dexstack.transforms import make_transform, matrix_to_quat_xyzw, pose_to_transform, rpy_to_matrix

    bundle = _tiny_bundle(description, episodes, tmp_path)
    text = json.dumps(target_to_dict(episodes[0].target, episodes[0].plan.T_base_object))
    policy = load_policy(str(bundle), description, reference=text)
    ref, q = policy.reference, description.home()
    pose = ref.object_pose_at(0.0)
    T = pose_to_transform(pose[:3], pose[3:])

    def seen(rpy):
        Tt = T @ make_transform((0.0, 0.0, 0.0), rpy_to_matrix(rpy))
        return np.concatenate([Tt[:3, 3], matrix_to_quat_xyzw(Tt[:3, :3])])

    spun = seen([0.0, 0.0, 1.2])  # 69 deg about the can's axis
    ctx = StepContext(RobotState(q=q, dq=0 * q, object_pose=spun), 0.0, PERIOD_S, ref, q.copy())
    policy.reset(ctx)
    assert policy.act(ctx) is not None and policy.status["phase"] == "reach"
    assert policy.status["object_frame_turned_deg"] == "69"
    assert np.allclose(ctx.state.object_pose, pose, atol=2e-3)  # seen in the target's frame
    later = StepContext(RobotState(q=ref.q_at(2.5), dq=0 * q, object_pose=spun), 2.5, PERIOD_S, ref, q.copy())
    policy.act(later)
    assert np.allclose(later.state.object_pose, pose, atol=2e-3)  # and so on every step of the run
    policy.reset(ctx)
    with pytest.raises(PolicyError, match="deg from where the grasp target was made"):
        policy.act(StepContext(RobotState(q=q, dq=0 * q, object_pose=seen([0.5, 0.0, 0.0])), 0.0, PERIOD_S, ref,
                               q.copy()))


def test_bad_grasp_targets_are_refused_with_the_cause(description, episodes, tmp_path):
    bundle = _tiny_bundle(description, episodes, tmp_path)
    ep = episodes[0]
    far = target_to_dict(ep.target, ep.plan.T_base_object)["T_base_object"]
    far["xyz_m"] = [1.6, 0.0, 0.06]
    cases = {"unreachable": _target_file(ep, tmp_path, T_base_object=far),
             "missing": _target_file(ep, tmp_path, q_hand_rad=[0.0] * 3),
             "no T_base_object": tmp_path / "nopose.yaml",
             "does not exist": tmp_path / "absent.yaml",
             "trained on": _target_file(ep, tmp_path, links=["link_1.0"], link_positions_object_m=[[0, 0, 0]],
                                        contact_mask=[True])}
    data = target_to_dict(ep.target)
    cases["no T_base_object"].write_text(yaml.safe_dump(data))
    expected = {"unreachable": "unreachable", "missing": "16 finite joint positions",
                "no T_base_object": "no T_base_object", "does not exist": "does not exist",
                "trained on": "trained"}
    for key, path in cases.items():
        with pytest.raises(PolicyError, match=expected[key]):
            load_policy(str(bundle), description, reference=str(path))
    with pytest.raises(PolicyError, match="JSON does not parse"):
        load_policy(str(bundle), description, reference="{not json")


def test_the_teacher_bundle_is_refused_on_the_robot(description, episodes, tmp_path):
    bundle = _tiny_bundle(description, episodes, tmp_path, teacher=True)
    target = _target_file(episodes[0], tmp_path)
    with pytest.raises(PolicyError, match="privileged"):
        load_policy(str(bundle), description, reference=str(target))


def test_history_starts_with_copies_and_keeps_the_last_steps():
    h = History(2, 3, 3)
    x = h.reset(torch.tensor([[1.0, 1, 1], [2, 2, 2]]))
    assert x[0].tolist() == [1.0] * 9
    x = h.push(torch.tensor([[5.0, 5, 5], [6, 6, 6]]), torch.tensor([False, True]))
    assert x[0].tolist() == [1.0] * 6 + [5.0] * 3  # oldest first
    assert x[1].tolist() == [6.0] * 9  # a new episode: copies of its first observation


def test_tiny_teacher_student_run_ships_a_student_the_runtime_loads(tmp_path, description):
    from dexstack.policies.grasp.trainer import GraspTrainConfig, train

    out = tmp_path / "bundle"
    summary = train(GraspTrainConfig(teacher_iterations=1, student_iterations=1, objects=("can",),
                                     envs_per_object=2, steps=4, placements=1), out, log=lambda *_: None)
    assert summary["teacher"]["iterations"] == 1 and summary["student"]["rounds"] == 1
    assert (out / "teacher" / "model.pt").is_file() and (out / "curves.csv").is_file()
    manifest = yaml.safe_load((out / "policy.yaml").read_text())
    assert manifest["type"] == "grasp" and manifest["params"]["history"] == 3
    assert "link_contact_force" not in [f["name"] for f in manifest["observation"]]
    policy = load_policy(str(out), description)
    assert policy.manifest.type == "grasp"


def test_an_object_far_from_the_palm_ends_the_episode_only_from_the_pre_grasp_on(task, episodes):
    """At home (an episode with the reach) the palm is ~0.5 m from the object: that is not a flung object."""
    ph = task.grasp.phases
    m = _perfect_state(task, episodes[0])
    m.object_pose = m.object_pose.clone()
    m.object_pose[:, 0] += task.grasp.max_object_palm_m + 0.1  # on the table, far from the palm
    _, failed, _ = _step(task, _state_at(task, 0.5 * ph.t_pregrasp_s), m)
    assert not bool(failed[0])
    _, failed, _ = _step(task, _state_at(task, ph.t_close_s), m)
    assert bool(failed[0])
