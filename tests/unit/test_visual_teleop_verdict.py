"""The visual-teleop demo's verdict on recorded runs (no ROS, no rendering): a robot driven by real teleoperation
(retargeting + arm IK) of what perception saw passes; a robot that did not move, a robot that moved but did not follow
this hand, and a run where perception saw nothing fail, each with its reason."""

import numpy as np
import pytest

from dexstack.calibration import load_camera_calibration
from dexstack.robot import load_description
from dexstack.sim.config import load_cell_config
from dexstack.sim.human_hand import HumanHandKinematics
from dexstack.teleop import TeleopConfig, TeleopController
from dexstack.teleop.evaluation import VisualTeleopCriteria, VisualTeleopRecord, evaluate, verdict
from dexstack.teleop.scripted_hand import GestureScript
from dexstack.transforms import make_transform, rpy_to_matrix

D = load_description("panda_allegro")
N_ARM = len(D.arm_joints)
RATE_HZ = 15.0  # the live operator camera's rate
SECONDS = 12.0  # open, relaxed, pinch, open, wrist rolls: the wrist moves and the fingers close
T0_NS = 1_764_460_000_000_000_000  # epoch stamps: beyond float64's exact integers


@pytest.fixture(scope="module")
def setting():
    cell = load_cell_config("tabletop_teleop")
    hh = cell.human_hand
    script = GestureScript(make_transform(hh.rest_xyz_m, rpy_to_matrix(hh.rest_rpy_rad)))
    hand = HumanHandKinematics(hh)
    n = int(SECONDS * RATE_HZ)
    stamps = T0_NS + (np.arange(n) * 1e9 / RATE_HZ).astype(np.int64)
    gt = np.array([hand.keypoints(*script(k / RATE_HZ)[:2]) for k in range(n)])
    return stamps, gt, load_camera_calibration(cell.operator_calibration)


def run(stamps, gt, seen, follow: str, delay_s: float = 0.12, seed: int = 0) -> VisualTeleopRecord:
    """A run as the demo records it. ``seen``: what perception published (None: no hand); ``follow``: 'teleop'
    (the robot does what teleop commands, ``delay_s`` after the frame), 'still' (it never moves)."""
    rng = np.random.default_rng(seed)
    controller = TeleopController(D, TeleopConfig(auto_engage=True))
    q = D.home()
    keypoints, arm, hand, times, states = {}, {}, {}, [], []
    for s, kp in zip(stamps, seen):
        t = s * 1e-9
        keypoints[int(s)] = kp
        times.append(t + delay_s)
        if kp is not None:
            command = controller.step(kp, q, t)
            if command is not None:
                arm[int(s)] = hand[int(s)] = t + 0.03 + 0.01 * rng.random()
                if follow == "teleop":
                    q = np.concatenate([command.arm_rad, command.hand_rad])
        states.append(q.copy())
    return VisualTeleopRecord(keypoints, stamps, gt, arm, hand, np.array(times), np.array(states))


def judge(record, cal):
    figures = evaluate(record, D, cal.T_parent_camera, cal.intrinsics)
    return figures, verdict(figures)


def noisy(gt, seed=1):
    return [g + np.random.default_rng(seed + k).normal(0.0, 0.003, g.shape) for k, g in enumerate(gt)]


def test_a_robot_that_follows_the_seen_hand_passes(setting):
    stamps, gt, cal = setting
    figures, reasons = judge(run(stamps, gt, noisy(gt), "teleop"), cal)
    assert reasons == [], (reasons, figures)
    assert figures["detection_rate"] == 1.0
    assert 3.0 < figures["keypoint_err_mm_median"] < 7.0  # the 3 mm/axis noise: ~4.6 mm
    assert figures["loop_hz"] == pytest.approx(RATE_HZ, rel=0.01)
    assert 30.0 < figures["latency_ms_p50"] < 40.0
    assert figures["expected_palm_travel_mm"] > 50.0
    assert figures["palm_err_mm_median"] < 10.0


def test_a_robot_that_did_not_move_fails(setting):
    stamps, gt, cal = setting
    figures, reasons = judge(run(stamps, gt, noisy(gt), "still"), cal)
    assert figures["palm_travel_mm"] == 0.0 and figures["hand_travel_rad"] == 0.0
    assert any("robot palm moved 0 mm" in r for r in reasons), reasons
    assert any("hand's joints moved" in r for r in reasons), reasons


def test_a_robot_following_another_hand_motion_fails(setting):
    """It moves as much, but after a different hand (the script 4 s later): the palm and fingers are off."""
    stamps, gt, cal = setting
    shift = int(4 * RATE_HZ)
    other = noisy(np.concatenate([gt[shift:], gt[:shift]]))
    figures, reasons = judge(run(stamps, gt, other, "teleop"), cal)
    assert any(r.startswith("palm") for r in reasons), (reasons, figures)
    assert any(r.startswith("fingertips") for r in reasons), (reasons, figures)


def test_perception_that_sees_nothing_fails_and_the_criteria_are_checked(setting):
    stamps, gt, cal = setting
    figures, reasons = judge(run(stamps, gt, [None] * len(gt), "teleop"), cal)
    assert figures["detection_rate"] == 0.0 and figures["traced_arm_commands"] == 0
    assert any(r.startswith("hand detected in 0.00") for r in reasons), reasons
    assert any("driver commands named their camera frame" in r for r in reasons), reasons
    with pytest.raises(ValueError, match="min_detection_rate"):
        VisualTeleopCriteria(min_detection_rate=float("nan"))


def test_a_record_survives_saving(setting, tmp_path):
    stamps, gt, cal = setting
    seen = noisy(gt)
    seen[3] = None
    record = run(stamps[:40], gt[:40], seen[:40], "teleop")
    record.save(tmp_path / "run.npz")
    again = VisualTeleopRecord.load(tmp_path / "run.npz")
    assert again.keypoints[int(stamps[3])] is None
    np.testing.assert_allclose(again.keypoints[int(stamps[5])], seen[5])
    assert again.arm_driver == record.arm_driver and again.hand_driver == record.hand_driver
    assert judge(again, cal)[0] == pytest.approx(judge(record, cal)[0], nan_ok=True)


def test_the_demo_mode_refuses_a_cell_without_the_human_hand_and_reports_nan_figures(setting, capsys):
    from dexstack.cli.demo import main
    from dexstack.cli.demo_visual_teleop import markdown

    assert main(["--mode", "visual_teleop", "--cell", "tabletop"]) == 2
    assert "no rendered human hand" in capsys.readouterr().out
    stamps, gt, cal = setting
    figures, reasons = judge(run(stamps[:20], gt[:20], [None] * 20, "still"), cal)
    text = markdown({"ok": False, "cell": "tabletop_teleop", "robot_profile": "panda_allegro", "seconds": 1.0,
                     "speed": 1.0, "camera_rate_hz": 15.0, "nodes": {}, "figures": figures, "outputs": {},
                     "reasons": reasons})
    assert "FAILED" in text and "latency arm nan" in text and "- FAILED: hand detected in 0.00" in text
