"""Hand retargeting, checked against keypoints made from the robot itself (so the right answer is known), for every
shipped retargeting config (``config/retarget/*.yaml``) on the robot it is made for."""

from dataclasses import replace

import numpy as np
import pytest

from dexstack.retarget import HandRetargeter, KeypointError, load_retarget_config, to_hand_frame
from dexstack.retarget.config import retarget_config_for
from dexstack.retarget.hand_model import HandModel
from dexstack.retarget.keypoints import THUMB, hand_frame_from_keypoints
from dexstack.retarget.synthetic import RobotHandKeypoints, synthetic_sequence
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from tests.profiles import RETARGET_CONFIGS


@pytest.fixture(scope="module", params=RETARGET_CONFIGS)
def description(request):
    description = load_description(load_retarget_config(request.param).robot_profile)
    assert retarget_config_for(description.profile.name) == request.param  # make() finds this config again
    return description


def make(description, method, **changes):
    config = load_retarget_config(retarget_config_for(description.profile.name), method)
    return HandRetargeter(replace(config, **changes), description)


@pytest.fixture(scope="module")
def sequence(description):
    r = make(description, "vector")
    return synthetic_sequence(r.config, r.hand, 150, seed=3)


def tips_mm(r, q):
    return 1000 * r.hand.link_positions(q, r.description.profile.hand.fingertip_links)


def test_hand_model_matches_the_merged_robot_kinematics(description):
    hand = HandModel(description)
    kin = Kinematics(description)
    rng = np.random.default_rng(0)
    links = [*description.profile.hand.fingertip_links, "link_2.0"]
    lo, hi = hand.lower_rad, hand.upper_rad
    for _ in range(5):
        q_arm = description.home(description.arm_joints) + rng.uniform(-0.3, 0.3, len(description.arm_joints))
        q_hand = rng.uniform(lo, hi)
        poses = kin.frame_poses(np.concatenate([q_arm, q_hand]), [description.profile.hand.palm_link, *links])
        T_palm_base = np.linalg.inv(poses[description.profile.hand.palm_link])
        expected = np.array([(T_palm_base @ poses[link])[:3, 3] for link in links])
        assert np.allclose(hand.link_positions(q_hand, links), expected, atol=1e-9)


def test_analytic_jacobians_match_finite_differences(description):
    hand = HandModel(description)
    ids = [hand.frame_id(link) for link in description.profile.hand.fingertip_links]
    q = hand.to_pin(np.random.default_rng(1).uniform(hand.lower_rad, hand.upper_rad))
    P, J = hand.points_and_jacobians(q, ids)
    eps = 1e-7
    for j in range(hand.n):
        dq = np.zeros(hand.n)
        dq[j] = eps
        P2, _ = hand.points_and_jacobians(q + dq, ids)
        assert np.allclose((P2 - P) / eps, J[:, :, j], atol=1e-5)


def test_human_frame_convention_matches_the_robot_hand(description):
    """The config's H axes on the robot: fingers along +x, flexion towards +z (out of the palm), and the frame
    estimated from the synthetic keypoints' geometry is H itself."""
    r = make(description, "vector")
    to_kp = RobotHandKeypoints(r.config, r.hand)
    q_open = r.description.home(r.joint_names)
    kp_open = to_kp(q_open)
    assert (kp_open[[8, 12, 16]] - kp_open[0])[:, 0].min() > 0.1 / r.config.scaling  # fingers along +x
    q_flex = q_open.copy()
    q_flex[[r.joint_names.index(j) for j in ("joint_1.0", "joint_2.0", "joint_5.0", "joint_6.0")]] = 1.0
    kp_flex = to_kp(q_flex)
    assert kp_flex[8, 2] - kp_open[8, 2] > 0.02 and kp_flex[12, 2] - kp_open[12, 2] > 0.02  # curl to +z
    for kp in (kp_open, kp_flex, to_kp(np.random.default_rng(0).uniform(r.hand.lower_rad, r.hand.upper_rad))):
        assert np.allclose(hand_frame_from_keypoints(kp, r.config.hand_side), np.eye(4), atol=1e-6)
    if r.config.hand_side == "left":  # H of a left hand read as a right one: z (and y) flipped
        assert hand_frame_from_keypoints(kp_open)[2, 2] < -0.99


def test_to_hand_frame_removes_the_tracker_pose(sequence):
    kp = sequence.keypoints_m[10]
    rng = np.random.default_rng(2)
    A = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    A *= np.sign(np.linalg.det(A))
    kp_camera = kp @ A.T + rng.normal(size=3)
    assert np.allclose(to_hand_frame(kp_camera), to_hand_frame(kp), atol=1e-9)
    mirrored = kp_camera * np.array([-1.0, 1.0, 1.0])  # a left hand seen the same way
    assert np.allclose(to_hand_frame(mirrored, side="left")[:, [0, 2]], to_hand_frame(kp)[:, [0, 2]], atol=1e-9)


@pytest.mark.parametrize("method", ["vector", "position"])
def test_recovers_a_known_configuration(description, method):
    r = make(description, method, reg_weight=0.0, low_pass_alpha=1.0)
    to_kp = RobotHandKeypoints(r.config, r.hand)
    rng = np.random.default_rng(4)
    lo, hi = r.hand.lower_rad, r.hand.upper_rad
    q_true = rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo))
    r.reset(np.clip(q_true + rng.uniform(-0.15, 0.15, r.hand.n), lo, hi))
    kp = to_kp(q_true)
    for _ in range(5):
        q = r.retarget(kp)
    assert np.abs(q - q_true).max() < 2e-3  # tips + PIP per finger pin down all 4 joints
    assert np.linalg.norm(tips_mm(r, q) - tips_mm(r, q_true), axis=1).max() < 0.05


@pytest.mark.parametrize("method", ["vector", "position", "dexpilot"])
def test_tracks_a_smooth_sequence_within_limits(description, sequence, method):
    r = make(description, method, low_pass_alpha=1.0)
    lo, hi = r.hand.lower_rad, r.hand.upper_rad
    errors, pinched = [], []
    for q_true, kp in zip(sequence.q_rad, sequence.keypoints_m, strict=True):
        q = r.retarget(kp)
        assert np.all(q >= lo) and np.all(q <= hi)
        errors.append(np.linalg.norm(tips_mm(r, q) - tips_mm(r, q_true), axis=1).mean())
        pinched.append(any(r.info.pinched))
    errors, pinched = np.array(errors)[10:], np.array(pinched)[10:]  # after converging from the home pose
    assert errors[~pinched].mean() < 2.0  # mm; the rest is the lag of the pull towards the previous solution
    assert np.percentile(errors[~pinched], 95) < 5.0


def test_an_unreachable_hand_pose_ends_at_the_joint_limits(description, sequence):
    r = make(description, "vector", low_pass_alpha=1.0)
    kp = sequence.keypoints_m[20].copy()
    kp[1:] = kp[0] + 3.0 * (kp[1:] - kp[0])  # a hand three times the size: fingers must stretch past their limits
    kp[:, 2] *= -1.0  # ... and bend backwards
    for _ in range(5):
        q = r.retarget(kp)
    lo, hi = r.hand.lower_rad, r.hand.upper_rad
    assert np.all(q >= lo) and np.all(q <= hi)
    assert np.isclose(q, lo).sum() + np.isclose(q, hi).sum() >= 4  # the limits are active, not ignored


def test_small_input_change_gives_small_output_change(description, sequence):
    a, b = make(description, "vector", low_pass_alpha=1.0), make(description, "vector", low_pass_alpha=1.0)
    for kp in sequence.keypoints_m[:30]:
        a.retarget(kp)
        b.retarget(kp)
    kp = sequence.keypoints_m[30]
    nudge = np.random.default_rng(5).normal(0, 1, kp.shape)
    nudge *= 0.5e-3 / np.linalg.norm(nudge, axis=1).max()  # every keypoint moves <= 0.5 mm
    qa, qb = a.retarget(kp), b.retarget(kp + nudge)
    assert np.abs(qa - qb).max() < 0.05
    tip_shift = np.linalg.norm(tips_mm(a, qa) - tips_mm(a, qb), axis=1).max()
    assert tip_shift < 3 * 0.5 * a.config.scaling  # mm: of the order of the scaled input change


@pytest.mark.parametrize("method", ["vector", "dexpilot"])
def test_deterministic(description, sequence, method):
    outs = []
    for _ in range(2):
        r = make(description, method)
        outs.append(np.array([r.retarget(kp) for kp in sequence.keypoints_m[:40]]))
    assert np.array_equal(outs[0], outs[1])


def test_nan_keypoints_raise_and_keep_the_previous_solution(description, sequence):
    a, b = make(description, "dexpilot"), make(description, "dexpilot")
    for kp in sequence.keypoints_m[:20]:
        a.retarget(kp)
        b.retarget(kp)
    before = a.last_solution
    bad = sequence.keypoints_m[20].copy()
    bad[THUMB[3]] = np.nan
    with pytest.raises(KeypointError, match=r"keypoints \[4\] are NaN"):
        a.retarget(bad)
    assert np.array_equal(a.last_solution, before)
    with pytest.raises(ValueError, match=r"shape \(21, 3\)"):
        a.retarget(np.zeros((20, 3)))
    assert np.array_equal(a.retarget(sequence.keypoints_m[21]), b.retarget(sequence.keypoints_m[21]))
    with pytest.raises(ValueError, match="finite joint positions"):
        a.reset(np.full(a.hand.n, np.nan))


def test_low_pass_filter_smooths_the_unfiltered_solutions(description, sequence):
    alpha = 0.4
    raw, filt = make(description, "vector", low_pass_alpha=1.0), make(description, "vector", low_pass_alpha=alpha)
    y = filt.last_solution
    for kp in sequence.keypoints_m[:25]:
        x = raw.retarget(kp)  # warm start uses the unfiltered solution, so these are the same solves
        y = alpha * x + (1 - alpha) * y
        assert np.allclose(filt.retarget(kp), y, atol=1e-12)


def test_dexpilot_pinches_with_hysteresis(description, sequence):
    dex = make(description, "dexpilot", low_pass_alpha=1.0)
    vec = make(description, "vector", low_pass_alpha=1.0)
    spec = dex.config.dexpilot
    thumb, index = spec.fingertip_human[0], spec.fingertip_human[1]
    kp = sequence.keypoints_m[60].copy()
    direction = kp[index] - kp[thumb]
    direction /= np.linalg.norm(direction)

    def at(distance_m):
        k = kp.copy()
        k[thumb] = k[index] - distance_m * direction  # move the human thumb tip towards the index tip
        return k

    def robot_gap_mm(r, q):
        t = tips_mm(r, q)
        return np.linalg.norm(t[r.description.profile.hand.fingertip_links.index(spec.fingertip_links[0])]
                              - t[r.description.profile.hand.fingertip_links.index(spec.fingertip_links[1])])

    ratios = []  # robot thumb-index gap, DexPilot / vector, with the human pinching in three hand poses
    for frame in (20, 100, 60):  # (frame 60 last: the hysteresis checks below start from its pinch)
        kp = sequence.keypoints_m[frame].copy()
        direction = kp[index] - kp[thumb]
        direction /= np.linalg.norm(direction)
        close = at(0.5 * spec.project_dist_m)
        dex.reset()
        vec.reset()
        for _ in range(8):
            q_dex, q_vec = dex.retarget(close), vec.retarget(close)
        assert dex.info.pinched[0]
        ratios.append(robot_gap_mm(dex, q_dex) / robot_gap_mm(vec, q_vec))
    # pulled together, not just scaled (how far depends on what the other fingers' targets allow)
    assert np.median(ratios) < 0.5 and max(ratios) < 0.8, ratios
    dex.retarget(at(0.5 * (spec.project_dist_m + spec.escape_dist_m)))
    assert dex.info.pinched[0]  # between the thresholds: still pinching (hysteresis)
    dex.retarget(at(1.2 * spec.escape_dist_m))
    assert not dex.info.pinched[0]
    dex.retarget(at(0.5 * (spec.project_dist_m + spec.escape_dist_m)))
    assert not dex.info.pinched[0]  # ... and from open, the same distance does not pinch
