"""Policy runtime core without ROS: manifests, layouts, references, registry plug-ins, swaps at step boundaries."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dexstack.policies import (
    InputCache,
    JointTargets,
    Policy,
    PolicyError,
    PolicyRuntime,
    ReferenceTrajectory,
    RobotState,
    StepContext,
    load_policy,
    load_reference,
    parse_manifest,
    register_policy,
    save_reference,
)
from dexstack.policies.action import ActionMapper
from dexstack.policies.manifest import ActionSpec, write_manifest
from dexstack.policies.networks import build_mlp
from dexstack.policies.observation import ObservationBuilder
from dexstack.robot import load_description
from dexstack.safety.gate import GateOutput
from dexstack.safety.limits import configured_margin_rad, description_command_limits
from tests.profiles import PROFILES

D = load_description("panda_allegro")
N, N_ARM = len(D.joints), len(D.arm_joints)


def ramp_reference(name="ramp", duration=2.0, amplitude=0.2) -> ReferenceTrajectory:
    t = np.linspace(0.0, duration, 21)
    q = D.home() + np.outer(t / duration, np.full(N, amplitude))
    q = np.clip(q, D.limit_arrays()["lower"], D.limit_arrays()["upper"])
    pose = np.tile([0.5, 0.0, 0.025, 0.0, 0.0, 0.0, 1.0], (t.size, 1))
    pose[:, 2] += 0.1 * t / duration
    return ReferenceTrajectory(times_s=t, q_rad=q, object_pose=pose, name=name, kind="test",
                               robot_profile="panda_allegro")


def state(q=None) -> RobotState:
    q = D.home() if q is None else q
    return RobotState(q=q.copy(), dq=np.zeros(N), object_pose=np.array([0.5, 0.0, 0.025, 0, 0, 0, 1.0]))


def replay_bundle(tmp_path, name="replay_a", reference_name="ramp"):
    folder = tmp_path / name
    save_reference(ramp_reference(reference_name), D.joints, folder / "ref.npz")
    write_manifest({"name": name, "type": "replay", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
                    "reference": "ref.npz"}, folder)
    return folder


# ------------------------------------------------------------------------------------------------ manifests
@pytest.mark.parametrize("raw, message", [
    ({"type": "replay", "robot_profile": "panda_allegro"}, "missing 'control_rate_hz'"),
    ({"type": "replay", "robot_profile": "p", "control_rate_hz": 20, "colour": 1},
     r"unknown key 'colour' in manifest: known keys are name, type"),
    ({"type": "network", "robot_profile": "p", "control_rate_hz": 20, "action": {"mode": "velocity"}},
     "action.mode 'velocity' is not one of"),
    ({"type": "network", "robot_profile": "p", "control_rate_hz": 20,
      "checkpoint": {"file": "m.pt", "format": "onnx"}}, "checkpoint.format 'onnx'"),
    ({"type": "network", "robot_profile": "p", "control_rate_hz": 20,
      "observation": [{"name": "joint_pos", "size": 23, "scale": [1, 2]}]}, r"scale has 2 values"),
    ({"type": "replay", "robot_profile": "p", "control_rate_hz": 5000}, r"outside \[0.5, 1000\]"),
])
def test_malformed_manifests_name_the_problem(raw, message):
    with pytest.raises(PolicyError, match=message):
        parse_manifest(raw)


def test_a_bundle_for_another_robot_is_rejected(tmp_path):
    folder = replay_bundle(tmp_path)
    write_manifest({"type": "replay", "robot_profile": "ur5_leap", "control_rate_hz": 20.0, "reference": "ref.npz"},
                   folder)
    with pytest.raises(PolicyError, match="made for robot profile 'ur5_leap', this robot is 'panda_allegro'"):
        load_policy(str(folder), D)


def test_unknown_bundle_lists_the_known_ones():
    with pytest.raises(PolicyError, match=r"unknown policy 'no_such_policy': known bundles are \[.*'replay'"):
        load_policy("no_such_policy", D)


def test_observation_sizes_are_checked_against_the_robot():
    m = parse_manifest({"type": "network", "robot_profile": "panda_allegro", "control_rate_hz": 20,
                        "observation": [{"name": "joint_pos", "size": 16}]})
    with pytest.raises(PolicyError, match="'joint_pos' declares size 16, but on robot 'panda_allegro' it has 23"):
        ObservationBuilder(m, D)


def test_reference_window_observations_look_ahead_in_control_periods():
    m = parse_manifest({"type": "network", "robot_profile": "panda_allegro", "control_rate_hz": 20, "observation": [
        {"name": "ref_joint_pos", "size": 3 * N, "steps": [0, 1, 4], "relative": True},
        {"name": "ref_object_pose", "size": 14, "steps": [0, 2]}, {"name": "phase", "size": 1}]})
    builder = ObservationBuilder(m, D)
    assert builder.size == 3 * N + 14 + 1 and builder.needs == {"reference", "reference_object"}
    ref = ramp_reference()
    s = state()
    obs = builder.build(StepContext(state=s, t_s=0.5, period_s=0.05, reference=ref))
    windows = obs[: 3 * N].reshape(3, N)
    for row, k in zip(windows, (0, 1, 4)):
        np.testing.assert_allclose(row, ref.q_at(0.5 + 0.05 * k) - s.q)
    np.testing.assert_allclose(obs[3 * N + 2], 0.025 + 0.1 * 0.5 / 2.0)  # object z at t
    np.testing.assert_allclose(obs[3 * N + 7 + 2], 0.025 + 0.1 * 0.6 / 2.0)  # two periods later
    assert obs[-1] == pytest.approx(0.25)


def test_object_fields_without_an_object_pose_are_an_error_not_a_crash():
    m = parse_manifest({"type": "network", "robot_profile": "panda_allegro", "control_rate_hz": 20,
                        "observation": [{"name": "object_pose", "size": 7}]})
    s = state()
    s.object_pose = None
    with pytest.raises(PolicyError, match="needs the object pose"):
        ObservationBuilder(m, D).build(StepContext(state=s, t_s=0.0, period_s=0.05))


# ------------------------------------------------------------------------------------------------ actions
def test_action_modes():
    ref = ramp_reference()
    s = state()
    last = D.home() + 0.01
    ctx = StepContext(state=s, t_s=1.0, period_s=0.05, reference=ref, last_target=last)
    raw = np.full(N, 0.5)
    lower, upper = description_command_limits(D)  # the gate's: the limits shrunk by safety.yaml's margin
    limits = D.limit_arrays()
    assert np.all(lower > limits["lower"]) and np.all(upper < limits["upper"])
    residual = ActionMapper(ActionSpec(mode="residual", scale=(0.1,)), D).targets(raw, ctx)
    np.testing.assert_allclose(residual.full(s.q, N_ARM), np.clip(ref.q_at(1.05) + 0.05, lower, upper))
    delta = ActionMapper(ActionSpec(mode="delta", scale=(0.1,)), D).targets(raw, ctx)
    np.testing.assert_allclose(delta.full(s.q, N_ARM), np.clip(last + 0.05, lower, upper))
    hand_only = ActionMapper(ActionSpec(mode="absolute", joints="hand", scale=(10.0,)), D)
    out = hand_only.targets(np.ones(N - N_ARM), ctx)
    assert out.arm is None
    np.testing.assert_allclose(out.hand, limits["upper"][N_ARM:] - configured_margin_rad())  # inside the gate's
    unmargined = ActionMapper(ActionSpec(mode="absolute", joints="hand", scale=(10.0,)), D, margin_rad=0.0)
    np.testing.assert_allclose(unmargined.targets(np.ones(N - N_ARM), ctx).hand, limits["upper"][N_ARM:])


def test_policy_targets_at_the_limits_pass_the_gate_unclamped():
    """A policy saturating every joint (e.g. a reference closing the hand onto its limits) sends targets the gate
    takes as they are: its clamp fires on real slips only (deployed runs logged 'target clamped' every step)."""
    from dexstack.safety.gate import SafetyConfig, SafetyGate

    gate = SafetyGate(D, SafetyConfig(position_margin_rad=configured_margin_rad()))
    ctx = StepContext(state=state(), t_s=1.0, period_s=0.05, reference=ramp_reference(), last_target=D.home())
    mapper = ActionMapper(ActionSpec(mode="absolute", scale=(10.0,)), D)
    for sign in (1.0, -1.0):
        targets = mapper.targets(np.full(N, sign), ctx)
        out = GateOutput()
        assert np.array_equal(gate._clamped(gate._hand, targets.hand, out, "hand"), targets.hand)
        assert np.array_equal(gate._clamped(gate._arm, targets.arm, out, "arm"), targets.arm)
        assert out.interventions == []
    # and the same targets through the raw description limits would have been clamped
    raw_limits = ActionMapper(ActionSpec(mode="absolute", scale=(10.0,)), D, margin_rad=0.0)
    out = GateOutput()
    gate._clamped(gate._hand, raw_limits.targets(np.ones(N), ctx).hand, out, "hand")
    assert out.interventions == ["hand: target clamped into joint limits"]


def test_actions_command_whole_parts_only():
    with pytest.raises(PolicyError, match=r"commands part of the arm: add \['panda_joint7'\]"):
        ActionMapper(ActionSpec(joints=D.arm_joints[:-1]), D)
    with pytest.raises(PolicyError, match="not joints of robot"):
        ActionMapper(ActionSpec(joints=("elbow",)), D)


# ------------------------------------------------------------------------------------------------ references
def test_reference_files_are_checked_and_reordered(tmp_path):
    ref = ramp_reference()
    order = list(reversed(D.joints))
    np.savez(tmp_path / "rev.npz", times_s=ref.times_s, q_rad=ref.q_rad[:, ::-1], joint_names=np.array(order))
    np.testing.assert_allclose(load_reference(tmp_path / "rev.npz", D).q_rad, ref.q_rad)
    np.savez(tmp_path / "short.npz", times_s=ref.times_s, q_rad=ref.q_rad[:, :7], joint_names=np.array(D.joints[:7]))
    with pytest.raises(PolicyError, match="has no values for joints"):
        load_reference(tmp_path / "short.npz", D)
    np.savez(tmp_path / "pickled.npz", times_s=ref.times_s, q_rad=ref.q_rad,
             joint_names=np.array([object()] * N, dtype=object))
    with pytest.raises(PolicyError, match="cannot be read safely"):
        load_reference(tmp_path / "pickled.npz", D)


def test_shipped_references_load_for_the_default_robot():
    from dexstack.policies import list_references, reference_path

    names = set(list_references())
    assert {"lift", "push", "rotate"} <= names and sum(n.startswith("heldout_") for n in names) >= 3
    for name in names:
        ref = load_reference(reference_path(name), D)
        assert ref.object_pose is not None and ref.duration_s > 3.0
        np.testing.assert_allclose(ref.q_at(0.0), D.home(), atol=1e-6)  # starts where the robot starts


# ------------------------------------------------------------------------------------------------ registry
@register_policy("test_constant")
class ConstantPolicy(Policy):
    """A type defined outside dexstack.policies: the node never needs editing for a new type."""

    def act(self, ctx):
        q = np.clip(self.description.home() + self.manifest.params["offset"], self.action.lower, self.action.upper)
        return JointTargets(arm=q[:N_ARM], hand=q[N_ARM:])


def test_a_new_policy_type_plugs_in_through_the_registry(tmp_path):
    write_manifest({"type": "test_constant", "robot_profile": "panda_allegro", "control_rate_hz": 10.0,
                    "params": {"offset": 0.1}}, tmp_path / "const")
    policy = load_policy(str(tmp_path / "const"), D)
    runtime = PolicyRuntime(D)
    runtime.stage(policy)
    out = runtime.step(state(), now_s=100.0)
    np.testing.assert_allclose(out.arm, D.home()[:N_ARM] + 0.1)
    assert runtime.period_s == pytest.approx(0.1)
    write_manifest({"type": "no_such_type", "robot_profile": "panda_allegro", "control_rate_hz": 10.0},
                   tmp_path / "bad")
    with pytest.raises(PolicyError, match="type 'no_such_type', which is not registered"):
        load_policy(str(tmp_path / "bad"), D)


# ------------------------------------------------------------------------------------------------ runtime
def test_replay_targets_the_reference_one_period_ahead(tmp_path):
    runtime = PolicyRuntime(D)
    runtime.stage(runtime.load(str(replay_bundle(tmp_path))))
    ref = ramp_reference()
    t0 = 50.0
    for k in range(5):
        out = runtime.step(state(), t0 + 0.05 * k)
        np.testing.assert_allclose(np.concatenate([out.arm, out.hand]),
                                   np.clip(ref.q_at(0.05 * k + 0.05), *description_command_limits(D)), atol=1e-9)


def network_bundle(tmp_path, name: str, reference: str) -> str:
    folder = tmp_path / name
    save_reference(ramp_reference(reference), D.joints, folder / "ref.npz")
    mlp = build_mlp([2 * N, 8, N])
    for p in mlp.parameters():
        torch.nn.init.zeros_(p)
    torch.save(mlp.state_dict(), folder / "model.pt")
    write_manifest({"name": name, "type": "tracking", "robot_profile": "panda_allegro", "control_rate_hz": 25.0,
                    "reference": "ref.npz",
                    "checkpoint": {"file": "model.pt", "format": "state_dict", "hidden": [8]},
                    "observation": [{"name": "joint_pos", "size": N}, {"name": "joint_vel", "size": N}],
                    "action": {"mode": "residual", "scale": 0.1}}, folder)
    return str(folder)


def test_swaps_happen_at_a_step_boundary_and_keep_the_clock(tmp_path):
    runtime = PolicyRuntime(D)
    runtime.stage(runtime.load(str(replay_bundle(tmp_path))))
    runtime.step(state(), 10.0)
    runtime.step(state(), 10.5)
    assert runtime.active.name == "replay_a"
    tracking = runtime.load(network_bundle(tmp_path, "track_same_ref", "ramp"))
    assert runtime.active.name == "replay_a"  # loading does not touch the running policy
    runtime.stage(tracking)
    assert runtime.active.name == "replay_a"  # ...nor does staging: only the next step swaps
    out = runtime.step(state(), 11.0)
    assert runtime.active is tracking and runtime.swaps == 1
    ref = ramp_reference()  # zero residual network: the reference at t = 1.0 + period, the clock kept
    np.testing.assert_allclose(np.concatenate([out.arm, out.hand]), ref.q_at(1.0 + 1 / 25.0), atol=1e-9)
    assert runtime.period_s == pytest.approx(1 / 25.0)
    other = runtime.load(network_bundle(tmp_path, "track_other_ref", "other"))
    runtime.stage(other)
    runtime.step(state(), 12.0)
    assert runtime.episode_time_s(12.0) == 0.0  # a different reference plays from its start


def test_a_bad_bundle_leaves_the_running_policy_alone(tmp_path):
    runtime = PolicyRuntime(D)
    runtime.stage(runtime.load(str(replay_bundle(tmp_path))))
    runtime.step(state(), 0.0)
    bad = tmp_path / "bad"
    write_manifest({"type": "tracking", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
                    "reference": "lift", "checkpoint": {"file": "missing.pt", "format": "rl_games"},
                    "observation": [{"name": "joint_pos", "size": N}], "action": {"mode": "residual"}}, bad)
    with pytest.raises(PolicyError, match="missing.pt does not exist"):
        runtime.load(str(bad))
    assert runtime.active.name == "replay_a" and runtime.step(state(), 0.05) is not None


def test_loading_happens_on_the_loader_thread(tmp_path):
    runtime = PolicyRuntime(D)
    seen = []
    original = Policy.dry_run

    def spy(self, ctx):
        seen.append(threading.current_thread().name)
        return original(self, ctx)

    Policy.dry_run = spy
    try:
        runtime.load(str(replay_bundle(tmp_path)))
    finally:
        Policy.dry_run = original
    assert seen and all(name.startswith("policy-loader") for name in seen)


def test_input_cache_assembles_partial_joint_states_and_times_out():
    cache = InputCache(D.joints)
    cache.update_joints(D.arm_joints, np.zeros(N_ARM), np.ones(N_ARM), now_s=1.0)
    assert cache.state(1.0, 0.2) is None  # the hand has not reported yet
    cache.update_joints(D.hand_joints, np.full(N - N_ARM, 0.3), [], now_s=1.05)
    s = cache.state(1.1, 0.2)
    assert s is not None and s.q[-1] == 0.3 and s.dq[0] == 1.0 and s.dq[-1] == 0.0 and s.object_pose is None
    cache.update_object(np.array([0.5, 0, 0.02, 0, 0, 0, 1.0]), now_s=1.1)
    assert cache.state(1.15, 0.2).object_pose is not None
    assert cache.state(1.22, 0.2) is None and cache.missing_joints(1.22, 0.2) == list(D.arm_joints)


def test_retarget_bundle_sends_nothing_until_a_hand_is_seen():
    policy = load_policy("teleop_retarget", D)
    assert policy.needs == {"hand_keypoints"}
    runtime = PolicyRuntime(D)
    runtime.stage(policy)
    assert runtime.step(state(), 1.0) is None  # no keypoints: no command, the safety monitor holds
    assert runtime.period_s == pytest.approx(1 / 30.0)


def test_every_shipped_bundle_loads_and_validates():
    from dexstack.policies import list_bundles

    bundles = list_bundles()
    assert {"replay", "track_cube", "teleop_retarget"} <= set(bundles)
    for name in bundles:
        policy = load_policy(name, D)
        assert policy.manifest.robot_profile == "panda_allegro" and policy.manifest.root == bundles[name]
    track = load_policy("track_cube", D)
    assert track.needs == {"object_pose", "reference", "reference_object"}
    assert track.manifest.checkpoint.format == "rl_games" and track.network.normalizer is not None


# ------------------------------------------------------------------------------------------------ every profile
@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_bundles_load_only_on_the_robot_they_were_made_for(profile):
    """A bundle trained on one robot is refused on another, with the reason (the joint count may even match)."""
    from dexstack.policies import list_bundles
    from dexstack.policies.manifest import load_manifest

    d = load_description(profile)
    bundles = list_bundles()
    assert bundles
    for name, root in bundles.items():
        made_for = load_manifest(root).robot_profile
        if made_for == profile:
            assert load_policy(name, d).manifest.robot_profile == profile
        else:
            with pytest.raises(PolicyError, match=f"made for robot profile '{made_for}', this robot is '{profile}'"):
                load_policy(name, d)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_network_bundle_made_for_a_profile_runs_on_it(profile, tmp_path):
    """Observation and action layouts come from the profile's description: any joint count (Panda 23, UR5 22)."""
    d = load_description(profile)
    n = len(d.joints)
    folder = tmp_path / profile
    t = np.linspace(0.0, 2.0, 21)
    q_ref = np.clip(d.home() + np.outer(t / 2.0, np.full(n, 0.2)), d.limit_arrays()["lower"], d.limit_arrays()["upper"])
    pose = np.tile([0.5, 0.0, 0.025, 0.0, 0.0, 0.0, 1.0], (t.size, 1))
    save_reference(ReferenceTrajectory(times_s=t, q_rad=q_ref, object_pose=pose, name="ramp", kind="test",
                                       robot_profile=profile), d.joints, folder / "ref.npz")
    mlp = build_mlp([2 * n, 8, n])
    for p in mlp.parameters():
        torch.nn.init.zeros_(p)
    torch.save(mlp.state_dict(), folder / "model.pt")
    write_manifest({"name": f"net_{profile}", "type": "tracking", "robot_profile": profile, "control_rate_hz": 25.0,
                    "reference": "ref.npz", "checkpoint": {"file": "model.pt", "format": "state_dict", "hidden": [8]},
                    "observation": [{"name": "joint_pos", "size": n}, {"name": "joint_vel", "size": n}],
                    "action": {"mode": "residual", "scale": 0.1}}, folder)
    runtime = PolicyRuntime(d)
    runtime.stage(runtime.load(str(folder)))
    out = runtime.step(RobotState(q=d.home(), dq=np.zeros(n), object_pose=pose[0]), 10.0)
    assert out.arm.shape == (len(d.arm_joints),) and out.hand.shape == (len(d.hand_joints),)
    # zero network, residual action: the reference one control period ahead
    ahead = np.array([np.interp(0.04, t, q_ref[:, j]) for j in range(n)])
    ahead = np.clip(ahead, *description_command_limits(d))  # inside the safety gate's command limits
    np.testing.assert_allclose(np.concatenate([out.arm, out.hand]), ahead, atol=1e-9)
    other = next((p for p in PROFILES if p != profile), None)
    if other is not None:  # ... and the same bundle on the other robot is refused before anything runs
        with pytest.raises(PolicyError, match=f"made for robot profile '{profile}', this robot is '{other}'"):
            PolicyRuntime(load_description(other)).load(str(folder))
