"""Tracking layer: references, the env's physics backend vs SimCell, task reward/success, evaluation path."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.policies import load_policy, load_reference, reference_path
from dexstack.policies.manifest import parse_manifest
from dexstack.policies.tracking.env import TaskConfig, TrackingEnv, TrackingTask, evaluate, quat_angle
from dexstack.policies.tracking.physics import CellBackend
from dexstack.policies.tracking.references import BASE_SPECS, HELD_OUT, make_reference, training_specs
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from dexstack.sim import SimCell

D = load_description("panda_allegro")
N, N_ARM = len(D.joints), len(D.arm_joints)


@pytest.fixture(scope="module")
def backend():
    return CellBackend()


def test_generated_references_put_the_palm_on_the_object_path():
    ref = make_reference(BASE_SPECS["lift"], D)
    kin = Kinematics(D)
    # during the lift the palm moves with the object: their offset stays fixed (IK error < 2 mm)
    times = np.linspace(5.0, 7.3, 6)
    offsets = [kin.frame_pose(ref.q_at(t), "palm_link")[:3, 3] - ref.object_pose_at(t)[:3] for t in times]
    assert np.ptp(np.array(offsets), axis=0).max() < 2e-3
    assert ref.object_pose_at(ref.duration_s)[2] == pytest.approx(0.025 + 0.10)
    speeds = np.abs(np.diff(ref.q_rad[:, :N_ARM], axis=0)) / np.diff(ref.times_s)[:, None]
    assert speeds.max() < 2.0  # rad/s: smooth enough for the safety monitor's limits to follow


def test_held_out_references_are_not_in_the_training_distribution():
    train = training_specs(60, seed=0)
    for spec in HELD_OUT:
        assert all((s.kind, s.object_xy_m, s.lift_m, s.push_m, s.rotate_rad) !=
                   (spec.kind, spec.object_xy_m, spec.lift_m, spec.push_m, spec.rotate_rad) for s in train)


def test_backend_steps_the_sim_cell_physics_with_its_command_semantics(backend):
    """Same model, same joint_trajectory_controller ramp: CellBackend and SimCell agree on a commanded motion."""
    cell = SimCell("tabletop", with_camera=False)
    q0 = D.home()
    target = q0 + np.concatenate([[0.2, -0.1, 0.0, 0.15, 0.0, 0.0, 0.1], np.full(N - N_ARM, 0.3)])
    target = np.clip(target, D.limit_arrays()["lower"], D.limit_arrays()["upper"])
    backend.reset(q0, np.array([0.5, 0.0, 0.025, 0.0, 0.0, 0.0, 1.0]))
    for _ in range(6):  # 6 control steps of 50 ms: a one-point trajectory each
        cell.command_arm_trajectory(D.arm_joints, [target[:N_ARM]], [0.05])
        cell.command_hand_positions(target[N_ARM:])
        cell.step(50)
        backend.command(target[:N_ARM], target[N_ARM:], 0.05)
        backend.advance(0.05)
    q_backend, _, obj = backend.observe()
    np.testing.assert_allclose(q_backend, cell.joint_state().position_rad, atol=1e-6)
    np.testing.assert_allclose(obj[:3], cell.object_pose()[:3, 3], atol=1e-6)
    assert np.abs(q_backend[:N_ARM] - target[:N_ARM]).max() < 0.02  # and it got there


def test_task_reward_and_success():
    ref = load_reference(reference_path("push"), D)
    task = TrackingTask(ref, TaskConfig())
    on = ref.object_pose_at(3.0)
    r_on, failed = task.step(ref.q_at(3.0), on, 3.0, np.zeros(N))
    off = on.copy()
    off[0] += 0.05
    r_off, _ = TrackingTask(ref).step(ref.q_at(3.0), off, 3.0, np.zeros(N))
    assert r_on > r_off and not failed
    far = on.copy()
    far[2] += 0.1
    assert TrackingTask(ref).step(ref.q_at(3.0), far, 3.0, np.zeros(N))[1]  # terminated
    assert task.success()
    assert quat_angle(np.array([0, 0, 0, 1.0]), np.array([0, 0, np.sin(0.25), np.cos(0.25)])) == pytest.approx(0.5)


def test_env_uses_the_bundle_layouts(backend):
    m = parse_manifest({"type": "tracking", "robot_profile": "panda_allegro", "control_rate_hz": 20,
                        "reference": "push", "observation": [
                            {"name": "joint_pos", "size": N}, {"name": "object_pose", "size": 7},
                            {"name": "ref_joint_pos", "size": 2 * N, "steps": [1, 2], "relative": True}],
                        "action": {"mode": "residual", "scale": 0.05}})
    env = TrackingEnv(m, D, backend, [load_reference(reference_path("push"), D)], seed=1)
    obs = env.reset()
    assert obs.shape == (N + 7 + 2 * N,) == (env.obs_size,)
    total, done, steps = 0.0, False, 0
    while not done:
        obs, reward, done, info = env.step(np.zeros(env.action_size))
        total += reward
        steps += 1
    assert steps == pytest.approx((8.0 - 3.0) * 20, abs=1) and info["timeout"] and total > 0


def test_evaluation_runs_policies_as_the_node_does(backend):
    replay = load_policy("replay", D)
    # heldout_push_diag: the trained push's open-loop replay is marginal (3.9 cm of the 4 cm limit at impratio 1,
    # 4.9 cm at the cell's 3)
    results = evaluate(replay, [load_reference(reference_path("heldout_push_diag"), D)], backend, D)
    assert results[0].reference == "heldout_push_diag" and results[0].success  # open-loop pushing works in the cell
    assert results[0].final_position_error_m < 0.03
