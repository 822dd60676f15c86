"""The demo's verdict checks every keyframe at its time, so a robot that never moved fails it; gate readiness."""

import numpy as np
import pytest

from dexstack.control.scripted import default_motion, load_motion
from dexstack.control.verdict import check_keyframes
from dexstack.retarget.arm import ArmIK
from dexstack.robot import load_description
from dexstack.safety import SafetyConfig, SafetyGate
from dexstack.safety.gate import load_safety_config
from tests.profiles import PROFILES

D = load_description("panda_allegro")
MOTION = load_motion("demo", D)
N_ARM = len(D.arm_joints)


def follow(motion, lag_s: float, start_s: float = 10.0, rate_hz: float = 200.0):
    """Joint states of a robot that follows the motion ``lag_s`` late (arm and hand piecewise linear)."""
    times = np.arange(start_s - 1.0, start_s + motion.duration_s + 2.0, 1.0 / rate_hz)
    q = np.array([np.concatenate([motion.arm_at(t - start_s - lag_s), motion.hand_at(t - start_s - lag_s)])
                  for t in times])
    lim = D.limit_arrays()
    return times, np.clip(q, lim["lower"] + 0.02, lim["upper"] - 0.02)


def test_a_robot_that_follows_the_motion_passes():
    times, q = follow(MOTION, lag_s=0.15)
    checks = check_keyframes(MOTION, D, 10.0, times, q)
    assert len(checks) == len(MOTION.times_s) and all(c.ok for c in checks), checks
    assert max(c.arm_error_rad for c in checks) < 0.01


def test_a_robot_that_never_moved_fails_although_it_ends_at_the_last_keyframe():
    times, _ = follow(MOTION, lag_s=0.0)
    home = np.tile(D.home(), (len(times), 1))
    # The old verdict (final pose vs last keyframe) holds: the demo ends at home.
    assert np.max(np.abs(home[-1] - np.concatenate([MOTION.arm_rad[-1], MOTION.hand_rad[-1]]))) < 0.05
    checks = check_keyframes(MOTION, D, 10.0, times, home)
    failed = [c.index for c in checks if not c.ok]
    assert 1 in failed and 2 in failed  # leaning over the cube (arm) and closing the hand
    assert checks[1].arm_error_rad > 0.3 and checks[2].hand_error_rad > 0.5


def test_an_arm_that_moves_while_the_hand_stays_open_fails_the_hand_keyframes():
    times, q = follow(MOTION, lag_s=0.0)
    q[:, N_ARM:] = D.home(D.hand_joints)
    checks = check_keyframes(MOTION, D, 10.0, times, q)
    assert checks[1].ok and not checks[2].ok and checks[2].arm_error_rad < 0.01


def test_too_late_or_unobserved_keyframes_fail():
    times, q = follow(MOTION, lag_s=1.0)  # a second late: not "at its time"
    assert not all(c.ok for c in check_keyframes(MOTION, D, 10.0, times, q))
    checks = check_keyframes(MOTION, D, 10.0, times[:10], q[:10])  # recording stopped early
    assert np.isinf(checks[-1].arm_error_rad) and not checks[-1].ok


def test_gate_readiness_says_why_it_is_not_ready():
    gate = SafetyGate(D, SafetyConfig())
    ready, reason = gate.readiness(0.0)
    assert not ready and "no complete /joint_states" in reason
    gate.update_state(D.home(), 1.0)
    assert gate.readiness(1.1) == (True, "ready: fresh /joint_states, taking commands")
    ready, reason = gate.readiness(1.0 + gate.config.state_timeout_s + 0.1)
    assert not ready and "stale" in reason
    gate.update_state(D.home(), 2.0)
    gate.estop("test")
    ready, reason = gate.readiness(2.0)
    assert not ready and "e-stop" in reason


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_has_a_demo_motion_the_gate_lets_through(profile):
    """dexstack-sim-demo's default motion for each shipped robot (demo_<profile>.yaml, else demo.yaml) loads for that
    robot, and every pose along it keeps the palm and fingertips inside the deployed workspace box and free of self
    and table collisions: the gate would execute it, not clip it (a Panda motion on the UR5 fails to load)."""
    description = load_description(profile)
    motion = load_motion(default_motion(profile), description)
    gate = SafetyGate(description, load_safety_config())
    for t in np.arange(0.0, motion.duration_s + 1e-9, 0.1):
        q = np.concatenate([motion.arm_at(t), motion.hand_at(t)])
        assert gate.workspace_violation_m(q) == 0.0, (profile, t)
        assert gate.collision_violation_m(q) == 0.0, (profile, t, gate.collision.colliding_pair_indices(q))
    lean = ArmIK(description).forward(motion.arm_rad[1])[:3, 3]  # the motion leans beside the cube, not onto it
    assert lean[2] > 0.15 and np.linalg.norm(lean[:2] - [0.5, 0.0]) > 0.1, lean
