"""TeleopController: clutch without jumps, hand loss, pause, wrist following, bad keypoints, on every profile."""

import numpy as np
import pytest

from dexstack.retarget import KeypointError
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from dexstack.teleop import ScriptedHumanHand, TeleopConfig, TeleopController
from tests.profiles import PROFILES


@pytest.fixture(scope="module", params=PROFILES)
def D(request):
    return load_description(request.param)


@pytest.fixture(scope="module")
def human(D):
    return ScriptedHumanHand(D, wrist_amplitude_m=0.08, wrist_period_s=4.0)


def run(controller, human, t0, t1, q, rate_hz=30.0):
    commands = []
    for t in np.arange(t0, t1, 1.0 / rate_hz):
        command = controller.step(human.keypoints_base(t), q, t)
        commands.append(command)
        if command is not None:
            q = np.concatenate([command.arm_rad, command.hand_rad])
    return commands, q


def test_nothing_is_commanded_until_engaged_and_engaging_does_not_jump(D, human):
    c = TeleopController(D, TeleopConfig(method="vector"))
    q = D.home()
    assert c.engage(q) == (False, "no hand seen yet: show your hand to the camera")
    commands, _ = run(c, human, 1.0, 1.51, q)  # the last frame is at t = 1.5
    assert all(cmd is None for cmd in commands)
    ok, _ = c.engage(q)
    assert ok
    first = c.step(human.keypoints_base(1.5), q, 1.5)  # the hand where it was when engaged
    np.testing.assert_allclose(first.arm_rad, q[:len(D.arm_joints)], atol=1e-3)  # the palm target starts at the palm


def test_palm_follows_the_wrist_motion_scaled(D):
    for scale in (1.0, 2.0):
        human = ScriptedHumanHand(D, wrist_amplitude_m=0.05, wrist_period_s=4.0)
        c = TeleopController(D, TeleopConfig(method="vector", position_scale=scale, auto_engage=True))
        kin = Kinematics(D)
        _, q = run(c, human, 0.0, 1.0, D.home())
        palm_moved = kin.frame_pose(q, "palm_link")[:3, 3] - kin.frame_pose(D.home(), "palm_link")[:3, 3]
        wrist_moved = human.T_base_H(1.0 - 1 / 30)[:3, 3] - human.T_base_H(0.0)[:3, 3]
        np.testing.assert_allclose(palm_moved, scale * wrist_moved, atol=1e-3)


def test_losing_the_hand_disengages_and_the_next_engage_starts_afresh(D, human):
    c = TeleopController(D, TeleopConfig(method="vector", hand_lost_timeout_s=0.3))
    q = D.home()
    c.step(human.keypoints_base(0.0), q, 0.0)
    c.engage(q)
    _, q = run(c, human, 0.0, 0.5, q)
    assert not c.check_hand_lost(0.5)
    assert c.check_hand_lost(0.5 + 0.31) and not c.engaged
    assert c.step(human.keypoints_base(2.0), q, 2.0) is None  # no auto-engage: stays disengaged


def test_pause_stops_commands_and_resume_needs_an_engage(D, human):
    c = TeleopController(D, TeleopConfig(method="vector", auto_engage=True))
    q = D.home()
    assert c.step(human.keypoints_base(0.0), q, 0.0) is not None
    c.set_paused(True)
    assert c.step(human.keypoints_base(0.1), q, 0.1) is None
    c.set_paused(False)
    assert c.step(human.keypoints_base(0.2), q, 0.2) is not None  # auto-engage re-references here


def test_bad_keypoints_raise_and_keep_the_previous_state(D, human):
    c = TeleopController(D, TeleopConfig(method="vector", auto_engage=True))
    q = D.home()
    c.step(human.keypoints_base(0.0), q, 0.0)
    kp = human.keypoints_base(0.1)
    kp[3] = np.nan
    with pytest.raises(KeypointError):
        c.step(kp, q, 0.1)
    assert c.engaged and c.last_hand_time_s == 0.0


def test_fingers_follow_the_scripted_hand_only_with_the_configs_hand_side(D, human):
    """The scripted hand's fingers are robot-hand motions: teleop must give them back. The human hand frame is
    built for the retargeting config's side (a left hand's H read as a right one flips the fingers through the
    palm)."""
    tips = D.profile.hand.fingertip_links
    kin = Kinematics(D)
    errors = {}
    side = TeleopController(D, TeleopConfig(method="vector")).hand_side
    assert side == ("left" if "left" in D.profile.hand.description else "right")
    for s in ("right", "left"):
        c = TeleopController(D, TeleopConfig(method="vector", auto_engage=True, hand_side=s))
        _, q = run(c, human, 0.0, 1.0, D.home())
        q_true = np.concatenate([q[:len(D.arm_joints)], human.q_hand_rad[human.frame_index(1.0 - 1 / 30)]])
        got = kin.frame_poses(q, tips)
        want = kin.frame_poses(q_true, tips)
        errors[s] = max(np.linalg.norm(got[t][:3, 3] - want[t][:3, 3]) for t in tips)
    other = "left" if side == "right" else "right"
    assert errors[side] < 0.01 and errors[other] > 0.03, errors  # metres
