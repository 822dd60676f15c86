"""SafetyGate core: each check has a test that fails if the check is removed, on every shipped robot profile."""

import math

import numpy as np
import pytest

from dexstack.control.commands import CommandError
from dexstack.paths import data_path
from dexstack.robot import load_description
from dexstack.safety import SafetyConfig, SafetyGate, load_safety_config
from tests.profiles import PROFILES

DT = 0.01


@pytest.fixture(scope="module", params=PROFILES)
def D(request):
    return load_description(request.param)


@pytest.fixture
def gate(D):
    g = SafetyGate(D, SafetyConfig(rate_hz=1.0 / DT))
    g.update_state(D.home(), 0.0)
    return g


def shoulder(D, delta_rad):
    """Home arm joints with the shoulder (the second joint: Panda joint2, UR5 shoulder_lift) moved; + lowers the
    hand towards the table on both arms."""
    target = D.home(D.arm_joints)
    target[1] += delta_rad
    return target


def run(gate, t0, seconds, q_meas=None, feed_state=True, **commands):
    """Tick for ``seconds``, feeding back the output as the measured state (an ideal robot), re-sending the given
    commands every tick as a streaming source (policy, teleop) does. ``arm=(target, time_from_start)``."""
    D = gate.description
    N_ARM = len(D.arm_joints)
    outputs = []
    q = D.home() if q_meas is None else q_meas.copy()
    for k in range(int(round(seconds / DT))):
        t = t0 + k * DT
        if feed_state:
            gate.update_state(q, t)
        if "hand" in commands:
            gate.hand_command(commands["hand"], t)
        if "arm" in commands:
            target, horizon = commands["arm"]
            gate.arm_command(D.arm_joints, [target], [horizon], t)
        out = gate.tick(t)
        if out.arm_rad is not None:
            q[:len(D.arm_joints)] = out.arm_rad
        if out.hand_rad is not None:
            q[N_ARM:] = out.hand_rad
        outputs.append((t, out))
    return outputs, q


def arm_outputs(outputs):
    return np.array([o.arm_rad for _, o in outputs if o.arm_rad is not None])


def test_nan_and_malformed_commands_are_rejected_and_nothing_is_forwarded(D, gate):
    with pytest.raises(CommandError, match="non-finite"):
        gate.hand_command([math.nan] * len(D.hand_joints), 0.0)
    with pytest.raises(CommandError, match="expected 16"):
        gate.hand_command([0.1] * 3, 0.0)
    with pytest.raises(CommandError, match="unknown joints"):
        gate.arm_command(["x", *D.arm_joints[1:]], [[0.0] * len(D.arm_joints)], [0.1], 0.0)
    out = gate.tick(0.0)
    assert out.arm_rad is None and out.hand_rad is None
    assert any("non-finite" in r for r in gate.interventions.counts())


def _free_joint_to_limit(D, gate) -> tuple[int, int, np.ndarray]:
    """(joint, +1 upper / -1 lower, start state): an arm joint that can move the last 0.3 rad to a limit through free
    space from home with only that joint changed (Panda: joint7 up; UR5: the wrist; its elbow folds onto itself)."""
    home, lim = D.home(), D.limit_arrays(D.arm_joints)
    options = sorted((abs(lim[side][j] - home[j]), j, sign) for j in range(len(D.arm_joints))
                     for side, sign in (("upper", 1), ("lower", -1)))
    for _, j, sign in options:
        limit = lim["upper" if sign > 0 else "lower"][j]
        path = [home.copy() for _ in range(16)]
        for k, q in enumerate(path):
            q[j] = limit - sign * 0.3 * (1 - k / 15)
        if all(gate.collision_violation_m(q) == 0 and gate.workspace_violation_m(q) == 0 for q in path):
            return j, sign, path[0]
    raise AssertionError(f"no arm joint of {D.profile.name} reaches a limit from home through free space")


def test_out_of_limit_targets_are_clamped_inside_the_margin(D, gate):
    lim = D.limit_arrays(D.arm_joints)
    j, sign, q_start = _free_joint_to_limit(D, gate)
    gate.update_state(q_start, 0.0)
    target = q_start[:len(D.arm_joints)].copy()
    limit = lim["upper" if sign > 0 else "lower"][j]
    target[j] = limit + sign * 0.1  # slightly beyond its limit
    outputs, q = run(gate, 0.0, 4.0, q_meas=q_start, arm=(target, 0.5))
    clamped = limit - sign * gate.config.position_margin_rad
    assert (sign * arm_outputs(outputs)[:, j]).max() <= sign * clamped + 1e-9
    assert q[j] == pytest.approx(clamped, abs=1e-3)
    assert "arm: target clamped into joint limits" in gate.interventions.counts()


def test_absurd_targets_are_refused_whole_with_the_reason(D, gate):
    target = D.home(D.arm_joints)
    target[0] = 50.0  # a bug, not a slip of a limit: refused, never clamped and executed toward the limit
    with pytest.raises(CommandError, match=rf"{D.arm_joints[0]} target 50.000 rad is .* outside its limits"):
        gate.arm_command(D.arm_joints, [target], [0.5], 0.0)
    assert gate.tick(0.0).arm_rad is None  # nothing taken
    hand = D.home(D.hand_joints)
    hand[3] = -7.0
    with pytest.raises(CommandError, match="outside its limits"):
        gate.hand_command(hand, 0.0)
    assert gate.tick(0.01).hand_rad is None
    # Inside the limits but a jump far from the measured state, or between two points of a trajectory.
    far = D.home(D.arm_joints)
    far[0] += gate.config.arm_max_step_rad + 0.1
    with pytest.raises(CommandError, match="from the measured state"):
        gate.arm_command(D.arm_joints, [far], [5.0], 0.0)
    near, other_side = D.home(D.arm_joints), D.home(D.arm_joints)
    near[0], other_side[0] = -2.0, 2.0
    with pytest.raises(CommandError, match="from point 0"):
        gate.arm_command(D.arm_joints, [near, other_side], [2.0, 4.0], 0.0)
    counts = gate.interventions.counts()
    assert counts["arm: target too far outside the joint limits, refused"] == 1
    assert counts["hand: target too far outside the joint limits, refused"] == 1
    assert counts["arm: target step too large, refused"] == 2
    # A sane command after them is taken.
    gate.arm_command(D.arm_joints, [D.home(D.arm_joints)], [0.5], 0.0)
    assert gate.tick(0.02).arm_rad is not None


def test_a_step_larger_than_the_velocity_limit_is_rate_limited(D, gate):
    target = D.home(D.arm_joints)
    target[0] += 1.0  # a 1 rad step commanded to happen in one tick
    outputs, q = run(gate, 0.0, 3.0, arm=(target, DT))
    arm = arm_outputs(outputs)
    velocity = np.diff(arm[:, 0]) / DT
    v_max = gate.config.velocity_scale * D.limits[D.arm_joints[0]].velocity
    assert velocity.max() <= v_max * 1.001
    assert np.abs(np.diff(velocity) / DT).max() <= gate.config.arm_max_acceleration_rad_s2 * 1.05
    assert q[0] == pytest.approx(target[0], abs=1e-3)  # and it still gets there


def test_stale_command_stream_holds_after_the_timeout(D, gate):
    q = D.home()
    t = 0.0
    for k in range(50):  # stream a moving target at 100 Hz
        t = k * DT
        target = D.home(D.arm_joints) + 0.002 * k
        gate.update_state(q, t)
        gate.arm_command(D.arm_joints, [target], [DT], t)
        out = gate.tick(t)
        assert out.arm_rad is not None
        q[:len(D.arm_joints)] = out.arm_rad
    outputs, _ = run(gate, t + DT, 0.5, q_meas=q)
    sent = [t_out for t_out, o in outputs if o.arm_rad is not None]
    assert sent and max(sent) <= t + gate.config.command_timeout_s + 1e-9
    assert "watchdog: arm command stream stale, holding" in gate.interventions.counts()


def test_stale_joint_states_stop_everything(D, gate):
    outputs, _ = run(gate, 0.0, 0.2, hand=D.home(D.hand_joints) + 0.3)
    assert all(o.hand_rad is not None for _, o in outputs)
    late = gate.config.state_timeout_s + 0.3
    outputs, _ = run(gate, late, 0.2, feed_state=False, hand=D.home(D.hand_joints) + 0.3)
    assert all(o.hand_rad is None for _, o in outputs)
    assert "watchdog: /joint_states stale, holding" in gate.interventions.counts()


def test_estop_latches_and_reset_needs_fresh_state(D, gate):
    gate.hand_command(D.home(D.hand_joints) + 0.3, 0.0)
    assert gate.tick(0.0).hand_rad is not None
    gate.estop("test")
    assert gate.tick(0.01).hand_rad is None
    with pytest.raises(CommandError, match="e-stop"):
        gate.hand_command(D.home(D.hand_joints), 0.02)
    ok, message = gate.reset(5.0)  # last state at t=0: stale
    assert not ok and "refused" in message and gate.estopped
    gate.update_state(D.home(), 5.0)
    ok, _ = gate.reset(5.0)
    assert ok and not gate.estopped
    assert gate.tick(5.01).hand_rad is None  # commands from before the stop do not resume


def test_workspace_box_keeps_the_palm_and_fingertips_inside(D):
    gate = SafetyGate(D, SafetyConfig(rate_hz=1.0 / DT, workspace_min_m=(-0.2, -0.7, 0.03)))
    gate.update_state(D.home(), 0.0)
    # Lower the hand by bending the shoulder until the fingertips would go below the box.
    target = shoulder(D, 1.4)
    assert gate.workspace_violation_m(np.concatenate([target, D.home(D.hand_joints)])) > 0
    _, q = run(gate, 0.0, 4.0, arm=(target, 1.0))
    assert gate.workspace_violation_m(q) == 0.0
    z_min = gate.config.workspace_min_m[2]
    gate.kinematics.update(q)
    tips_z = [gate.kinematics.pose(f)[2, 3] for f in gate.frames]
    assert min(tips_z) >= z_min - 1e-6 and min(tips_z) < z_min + 0.02  # clipped at the boundary, not far above
    assert "workspace: step clipped at the box boundary" in gate.interventions.counts()


def test_the_table_stops_the_hand_links_at_its_surface(D):
    gate = SafetyGate(D, SafetyConfig(rate_hz=1.0 / DT, finger_table_penetration_m=0.015))  # one floor for all links
    gate.update_state(D.home(), 0.0)
    target = shoulder(D, 1.6)  # fingers through the table
    q_target = np.concatenate([target, D.home(D.hand_joints)])
    assert gate.collision.table_clearance_m(q_target) < -0.02
    assert any("vs table" in pair for pair, _ in gate.collision.collisions(q_target))
    _, q = run(gate, 0.0, 4.0, arm=(target, 1.0))
    clearance = gate.collision.table_clearance_m(q)
    assert 0.0 <= clearance < 0.01  # stopped at the table, not above it
    assert gate.collision_violation_m(q) == 0.0
    assert "collision: step clipped before contact" in gate.interventions.counts()
    assert any("vs table" in pair for pair in gate.last_collisions)
    # Fingertips end closer to the table than the old palm/fingertip box (z >= 1 cm) allowed.
    gate.kinematics.update(q)
    assert min(gate.kinematics.pose(f)[2, 3] for f in D.profile.hand.fingertip_links) < 0.01


def lowest_z_m(collision, q):
    """(lowest finger-link point, lowest other moving point) of the capsule skeleton at ``q`` (base frame z, m)."""
    import pinocchio as pin

    pin.forwardKinematics(collision.model, collision.data, collision.kinematics._q(q))
    finger, other = np.inf, np.inf
    for k in collision._moving:
        s = collision.segments[k]
        if s.joint < 2:
            continue
        placement = collision.data.oMi[s.joint]
        z = min(placement.act(s.start)[2], placement.act(s.end)[2]) - s.radius
        if s.finger:
            finger = min(finger, z)
        else:
            other = min(other, z)
    return finger, other


def test_fingers_may_press_on_the_table_deeper_than_the_arm_and_palm(D, gate):
    """Issue 17 (a): a finger's setpoint below the table top is a finger pressing on it (it stops at the surface),
    so finger links may go to finger_table_penetration_m; arm links and the palm keep table_penetration_m."""
    c = gate.config
    assert c.finger_table_penetration_m > c.table_penetration_m
    target = shoulder(D, 1.6)  # hand driven into the table
    _, q = run(gate, 0.0, 4.0, arm=(target, 1.0))
    finger_z, other_z = lowest_z_m(gate.collision, q)
    assert finger_z < -c.table_penetration_m - 0.002  # deeper than the arm's floor: pressing is allowed ...
    assert finger_z >= -c.finger_table_penetration_m - 1e-4  # ... down to the fingers' floor
    assert other_z >= -c.table_penetration_m - 1e-4
    assert gate.collision_violation_m(q) == 0.0
    assert gate.collision.table_clearance_m(q) >= -1e-4
    # The same setpoint with one 15 mm floor for every link is a table collision of the finger links.
    strict = SafetyGate(D, SafetyConfig(rate_hz=1.0 / DT, finger_table_penetration_m=c.table_penetration_m))
    pairs = [pair for pair, _ in strict.collision.collisions(q)]
    assert any(pair.endswith("vs table (fingers)") for pair in pairs)
    assert strict.collision.table_clearance_m(q) == pytest.approx(finger_z + c.table_penetration_m, abs=1e-6)
    # Nothing else was relaxed: the palm/arm floor is where it was.
    assert gate.collision.table_clearance_m(q) == pytest.approx(
        min(finger_z + c.finger_table_penetration_m, other_z + c.table_penetration_m), abs=1e-6)


def test_a_push_with_fingers_at_the_table_passes_the_gate_unchanged(D, gate):
    """Issue 17 item 6: the push reference's fingers skim the table (tips ~5 mm above it); the gate allows it."""
    push = np.load(data_path("policies", "references", "push.npz"))
    names = [str(n) for n in push["joint_names"]]
    if not set(D.joints) <= set(names):
        pytest.skip(f"the shipped push reference is recorded on another robot ({names[0]}, ...)")
    q_ref = push["q_rad"][:, [names.index(j) for j in D.joints]]
    lowest = []
    for q in q_ref[::3]:
        assert gate.workspace_violation_m(q) == 0.0 and gate.collision_violation_m(q) == 0.0
        gate.kinematics.update(q)
        lowest.append(min(gate.kinematics.pose(f)[2, 3] for f in D.profile.hand.fingertip_links))
    assert min(lowest) < 0.01  # it really goes near the table (the old box clipped it)


def _hand_into_arm_target(D, gate) -> np.ndarray:
    """Arm joints (hand at home) where the hand hits the arm, reached from home through free space: the first of a
    seeded random search, so every profile gets one (Panda: thumb into the forearm)."""
    rng = np.random.default_rng(0)
    lim = D.limit_arrays(D.arm_joints)
    home_arm, home_hand = D.home(D.arm_joints), D.home(D.hand_joints)
    hand_names = set(D.hand_joints) | {D.profile.hand.root_link}
    for _ in range(20000):
        target = np.clip(home_arm + rng.uniform(-2.0, 2.0, len(home_arm)), lim["lower"] + 0.05, lim["upper"] - 0.05)
        pairs = [p for p, _ in gate.collision.collisions(np.concatenate([target, home_hand]))]
        if not pairs or any("table" in p for p in pairs):
            continue
        if not all(any(h in p for h in hand_names) for p in pairs):
            continue  # arm against arm: not this test
        path = [np.concatenate([home_arm + u * (target - home_arm), home_hand]) for u in np.linspace(0, 1, 40)]
        first = next(k for k, q in enumerate(path) if gate.collision_violation_m(q) > 0)
        if first >= 20 and all(gate.workspace_violation_m(q) == 0.0 for q in path[:first]):
            return target  # the first half of the way is free: the gate should get there, then stop
    raise AssertionError(f"no hand-into-arm configuration found for {D.profile.name}")


def test_self_collision_of_the_hand_with_the_arm_is_stopped(D, gate):
    target = _hand_into_arm_target(D, gate)
    _, q = run(gate, 0.0, 6.0, arm=(target, 1.0))
    assert gate.collision_violation_m(q) == 0.0
    moved = np.abs(q[:len(D.arm_joints)] - D.home(D.arm_joints))
    assert np.max(moved) > 0.4 * np.max(np.abs(target - D.home(D.arm_joints)))  # it moved most of the way
    assert "collision: step clipped before contact" in gate.interventions.counts()
    arm_links = [p for p in gate.last_collisions if any(j in p for j in D.arm_joints)]
    assert arm_links and not any("table" in p for p in gate.last_collisions)


def test_workspace_reject_mode_holds_instead_of_clipping(D):
    g = SafetyGate(D, SafetyConfig(rate_hz=1.0 / DT, workspace_mode="reject", workspace_max_m=(0.95, 0.7, 0.65)))
    g.update_state(D.home(), 0.0)
    target = shoulder(D, -0.6)  # lifts the thumb above 0.65 m
    assert g.workspace_violation_m(np.concatenate([target, D.home(D.hand_joints)])) > 0
    outputs, q = run(g, 0.0, 2.0, arm=(target, 0.5))
    assert g.workspace_violation_m(q) == 0.0
    moved = arm_outputs(outputs)[:, 1] - D.home(D.arm_joints)[1]
    assert moved.min() < -0.1  # it moved toward the target until the next step would have left the box
    assert "workspace: palm/fingertips would leave the box, holding" in g.interventions.counts()


def test_bad_configuration_is_rejected_with_reasons(D):
    with pytest.raises(ValueError, match="workspace_min_m must be below"):
        SafetyGate(D, SafetyConfig(workspace_min_m=(1, 0, 0), workspace_max_m=(0, 1, 1)))
    assert SafetyConfig(velocity_scale=2.0).errors() == ["velocity_scale must be in (0, 1]"]


def test_a_planned_trajectory_reaches_its_last_point_even_when_the_limits_slow_it_down(D, gate):
    target = D.home(D.arm_joints)
    target[0] += 1.0  # 1 rad in 0.5 s: twice the velocity limit
    mid = (D.home(D.arm_joints) + target) / 2
    gate.arm_command(D.arm_joints, [mid, target], [0.25, 0.5], 0.0)
    _, q = run(gate, 0.0, 3.0)  # no further commands
    assert q[0] == pytest.approx(target[0], abs=1e-3)


def test_late_ticks_advance_the_filter_by_the_elapsed_time(D, gate):
    target = D.home(D.arm_joints)
    v_max = gate.config.velocity_scale * D.limits[D.arm_joints[0]].velocity
    target[0] += 2 * v_max**2 / gate.config.arm_max_acceleration_rad_s2  # far enough to reach the speed limit
    q = D.home()
    positions = []
    for t in np.arange(0.0, 1.0, 3 * DT):  # ticks three periods apart
        gate.update_state(q, t)
        gate.arm_command(D.arm_joints, [target], [DT], t)
        out = gate.tick(t)
        q[:len(D.arm_joints)] = out.arm_rad
        positions.append(out.arm_rad[0])
        assert out.horizon_s == pytest.approx(DT if t == 0.0 else 3 * DT)  # the driver takes that long
    speed = np.diff(positions) / (3 * DT)
    v_max = gate.config.velocity_scale * D.limits[D.arm_joints[0]].velocity
    assert speed.max() == pytest.approx(v_max, rel=0.02)  # wall-clock speed at the limit, not a third of it


def test_the_deployed_limits_load_outside_ros_exactly_as_the_node_gets_them(D, tmp_path):
    config = load_safety_config()
    assert config == SafetyConfig()  # config/safety.yaml states the defaults the node and the envs share
    gate = SafetyGate(D, config)
    assert gate.collision.config.table_penetration_m == config.table_penetration_m
    bad = tmp_path / "safety.yaml"
    bad.write_text("safety_monitor:\n  ros__parameters:\n    table_penetraton_m: 0.1\n")
    with pytest.raises(ValueError, match="unknown key 'table_penetraton_m' in .*: known keys are"):
        load_safety_config(str(bad))
    bad.write_text("safety_monitor:\n  ros__parameters:\n    table_penetration_m: 0.5\n")
    with pytest.raises(ValueError, match="table_penetration_m must be in"):
        load_safety_config(str(bad))


def test_a_blocked_finger_keeps_its_grip_within_the_tracking_error_bound(D, gate):
    """Issue 17 (c, d): a finger blocked by a grasped object (measured position stuck) is the grasp; the gate pulls
    its setpoint back to max_tracking_error_rad from the measured position instead of restarting from it, so the
    grip force (stiffness x error) never drops to zero, and the jump when the object goes away stays bounded."""
    limit = gate.config.max_tracking_error_rad
    N_ARM = len(D.arm_joints)
    q_meas = D.home()
    target = D.home(D.hand_joints).copy()
    j = int(np.argmax(D.limit_arrays(D.hand_joints)["upper"] - target))  # the joint with the most room to close
    target[j] += 1.0  # commanded 1 rad into the object
    errors = []
    for k in range(100):
        t = k * DT
        gate.update_state(q_meas, t)  # the finger does not move: blocked
        gate.hand_command(target, t)
        out = gate.tick(t)
        errors.append(out.hand_rad[j] - q_meas[N_ARM + j])
    errors = np.array(errors)
    assert errors.max() <= limit + 0.05  # bounded (one tick of filter motion past the limit at most)
    after = errors[np.argmax(errors > limit * 0.9):]  # once the limit is reached the grip stays near it ...
    assert after.min() > 0.8 * limit  # ... never reset to zero force (the old re-seed went back to 0)
    counts = gate.interventions.counts()
    assert counts.get("hand: robot far from setpoint, setpoint pulled back to max_tracking_error_rad", 0) > 0
    assert not any("restarting" in reason for reason in counts)


def test_a_blocked_arm_still_restarts_from_the_measured_state(D, gate):
    target = D.home(D.arm_joints).copy()
    target[3] += 1.0 if D.limit_arrays(D.arm_joints)["upper"][3] - target[3] > 1.1 else -1.0
    q_meas = D.home()
    seen = []
    for k in range(150):
        t = k * DT
        gate.update_state(q_meas, t)
        gate.arm_command(D.arm_joints, [target], [0.05], t)
        out = gate.tick(t)
        seen.append(abs(out.arm_rad[3] - q_meas[3]))
    assert min(seen[50:]) < 0.05  # restarted from the measured state (the stiff arm must not push on)
    assert "arm: robot far from setpoint, restarting from measured state" in gate.interventions.counts()
