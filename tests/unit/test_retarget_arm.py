"""Wrist -> arm: the clutch-based wrist mapping and the damped-least-squares arm IK (limits, warm start), on every
shipped robot profile (a 7-DoF Panda and a 6-DoF UR5: redundant and not)."""

import numpy as np
import pinocchio as pin
import pytest

from dexstack.retarget import ArmIK, ArmIKConfig, HandRetargeter, WristMapper, WristMapperConfig
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from tests.profiles import PROFILES


@pytest.fixture(scope="module", params=PROFILES)
def description(request):
    return load_description(request.param)


@pytest.fixture(scope="module")
def kin(description):
    return Kinematics(description)


@pytest.fixture
def ik(description):
    return ArmIK(description)


@pytest.fixture(scope="module")
def T_palm_H(description):
    return HandRetargeter.from_file("", "vector", description).T_root_H  # the profile's own retargeting config


def palm_pose(description, kin, q_arm):
    q = np.concatenate([q_arm, description.home(description.hand_joints)])
    return kin.frame_pose(q, description.profile.hand.palm_link)


def rot_err(A, B):
    return np.linalg.norm(pin.log3(A[:3, :3] @ B[:3, :3].T))


def test_forward_matches_the_robot_kinematics(description, kin, ik):
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(ik.lower_rad, ik.upper_rad)
        assert np.allclose(ik.forward(q), palm_pose(description, kin, q), atol=1e-9)


def test_reaches_targets_near_the_seed_within_limits(description, kin, ik):
    rng = np.random.default_rng(1)
    home = description.home(description.arm_joints)
    for _ in range(10):
        q_goal = np.clip(home + rng.uniform(-0.5, 0.5, len(home)), ik.lower_rad, ik.upper_rad)
        T = palm_pose(description, kin, q_goal)
        ik.reset()
        res = ik.solve(T)
        assert res.converged, res
        assert np.all(res.q_rad >= ik.lower_rad) and np.all(res.q_rad <= ik.upper_rad)
        T_got = palm_pose(description, kin, res.q_rad)  # checked with the robot's own kinematics
        assert np.linalg.norm(T_got[:3, 3] - T[:3, 3]) < 1e-4 and rot_err(T_got, T) < 1e-3


def test_warm_start_needs_no_iteration_for_the_same_target(description, kin, ik):
    T = palm_pose(description, kin, description.home(description.arm_joints) + 0.2)
    first = ik.solve(T)
    again = ik.solve(T)
    assert first.converged and again.converged
    assert again.iterations == 0 and first.iterations > 0
    assert np.array_equal(again.q_rad, first.q_rad)


def test_unreachable_target_is_best_effort_within_limits(description, kin, ik):
    T = palm_pose(description, kin, description.home(description.arm_joints))
    T[:3, 3] += [2.0, 0.0, 0.0]  # 2 m beyond the arm's reach (Panda 0.86 m, UR5 0.85 m)
    res = ik.solve(T)
    assert not res.converged
    assert np.all(np.isfinite(res.q_rad))
    assert np.all(res.q_rad >= ik.lower_rad) and np.all(res.q_rad <= ik.upper_rad)
    reached = palm_pose(description, kin, res.q_rad)[:3, 3]
    assert np.isclose(res.position_error_m, np.linalg.norm(T[:3, 3] - reached), rtol=1e-6)
    start = palm_pose(description, kin, description.home(description.arm_joints))[:3, 3]
    assert res.position_error_m < np.linalg.norm(T[:3, 3] - start) - 0.2  # it did stretch towards the target


def test_target_needing_a_joint_past_its_limit_keeps_the_limit(description, kin, ik):
    # the arm joint whose home is closest to its upper limit, bent past that limit
    q_goal = description.home(description.arm_joints)
    j = int(np.argmin(ik.upper_rad - q_goal))
    q_goal[j] = ik.upper_rad[j] + 0.4  # the pose of an elbow bent past its stop
    T = palm_pose(description, kin, q_goal)
    ik.reset(np.clip(q_goal, ik.lower_rad, ik.upper_rad))
    res = ik.solve(T)
    assert np.all(res.q_rad >= ik.lower_rad) and np.all(res.q_rad <= ik.upper_rad)
    assert res.q_rad[j] <= ik.upper_rad[j]


def test_bad_target_raises_and_keeps_the_warm_start(description, kin, ik):
    T = palm_pose(description, kin, description.home(description.arm_joints) + 0.1)
    ik.solve(T)
    for bad in (np.full((4, 4), np.nan), np.diag([2.0, 1.0, 1.0, 1.0]), np.eye(3)):
        with pytest.raises(ValueError):
            ik.solve(bad)
    assert ik.solve(T).iterations == 0


def test_frame_on_a_finger_is_refused(description):
    with pytest.raises(ValueError, match="moves with the hand joints"):
        ArmIK(description, ArmIKConfig(frame=description.profile.hand.fingertip_links[0]))


def _moved(T, translation=(0, 0, 0), rotvec=(0, 0, 0)):
    """T moved by a base-frame rotation about its own origin, then translated."""
    out = T.copy()
    out[:3, :3] = pin.exp3(np.asarray(rotvec, float)) @ T[:3, :3]
    out[:3, 3] += translation
    return out


def test_clutch_engages_without_a_jump_and_follows_relative_motion(T_palm_H):
    mapper = WristMapper(T_palm_H, WristMapperConfig(position_scale=1.5))
    human = _moved(np.eye(4), (0.3, -0.2, 1.1), (0.3, -0.5, 1.0))  # wherever the operator's hand happens to be
    palm_now = _moved(np.eye(4), (0.5, 0.0, 0.4), (np.pi, 0, 0))
    assert mapper.update(human) is None  # not engaged yet: nothing commanded
    assert np.allclose(mapper.engage(human, palm_now), palm_now)
    assert np.allclose(mapper.update(human), palm_now)  # no jump at engage
    target = mapper.update(_moved(human, (0.02, 0.0, -0.01)))
    assert np.allclose(target[:3, 3] - palm_now[:3, 3], 1.5 * np.array([0.02, 0.0, -0.01]))
    assert rot_err(target, palm_now) < 1e-12
    # turning the human wrist about the base z turns the robot the same way about the robot's wrist point
    target = mapper.update(_moved(human, rotvec=(0, 0, 0.4)))
    wrist_before, wrist_after = palm_now @ T_palm_H, target @ T_palm_H
    assert np.allclose(wrist_after[:3, 3], wrist_before[:3, 3])
    assert np.allclose(wrist_after[:3, :3], pin.exp3(np.array([0, 0, 0.4])) @ wrist_before[:3, :3])


def test_clutch_disengage_and_recentre(T_palm_H):
    mapper = WristMapper(T_palm_H)
    human = _moved(np.eye(4), (0.0, 0.0, 1.0))
    palm = _moved(np.eye(4), (0.5, 0.0, 0.4))
    mapper.engage(human, palm)
    held = mapper.update(_moved(human, (0.05, 0, 0)))
    mapper.disengage()
    assert not mapper.engaged and mapper.update(_moved(human, (0.30, 0, 0))) is None  # operator re-centres
    far = _moved(human, (0.30, 0.1, -0.2), (0.2, 0, 0))
    assert np.allclose(mapper.engage(far, held), held)  # re-engaged far away: the robot does not jump
    assert np.allclose(mapper.update(far), held)
    assert np.allclose(mapper.update(_moved(far, (0, 0.01, 0)))[:3, 3], held[:3, 3] + [0, 0.01, 0])


def test_absolute_mode_and_workspace_clamp(T_palm_H):
    cfg = WristMapperConfig(mode="absolute", position_scale=0.5, offset_m=(0.4, 0.0, 0.1),
                            workspace_min_m=(-1.0, -1.0, 0.0), workspace_max_m=(1.0, 1.0, 1.0))
    mapper = WristMapper(T_palm_H, cfg)
    human = _moved(np.eye(4), (0.2, 0.4, 0.6), (0.1, 0.2, 0.3))
    W = mapper.update(human) @ T_palm_H  # the robot wrist frame
    assert np.allclose(W[:3, :3], human[:3, :3])
    assert np.allclose(W[:3, 3], 0.5 * human[:3, 3] + [0.4, 0.0, 0.1])
    low = mapper.update(_moved(np.eye(4), (0.0, 0.0, -5.0)))
    assert low[2, 3] == 0.0  # clamped into the workspace box


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="mirror"), "mode"), (dict(position_scale=0.0), "position_scale"),
    (dict(workspace_min_m=(0, 0, 0)), "both"),
    (dict(workspace_min_m=(0, 0, 1), workspace_max_m=(1, 1, 0)), "exceeds"),
])
def test_wrist_mapper_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WristMapperConfig(**kwargs)


def test_teleop_loop_has_no_joint_jumps_across_clutch_events(description, ik, T_palm_H):
    """Human wrist path -> mapper -> IK at 30 Hz, with a disengage / re-centre / engage in the middle."""
    mapper = WristMapper(T_palm_H)
    q = description.home(description.arm_joints)
    human0 = _moved(np.eye(4), (0.1, 0.2, 1.2), (0.0, 0.3, 0.0))
    mapper.engage(human0, ik.forward(q))
    steps = []
    for k in range(90):
        t = k / 30.0
        human = _moved(human0, (0.1 * np.sin(t), 0.08 * (1 - np.cos(t)), 0.05 * np.sin(2 * t)), (0, 0, 0.3 * np.sin(t)))
        if k == 45:
            mapper.disengage()
        if k == 50:  # re-engaged with the hand somewhere else
            human0 = _moved(human, (0.2, -0.1, 0.0))
            mapper.engage(human0, ik.forward(q))
        if k >= 50:
            human = _moved(human0, (0.0, 0.05 * (t - 50 / 30.0), 0.0))
        target = mapper.update(human)
        if target is None:
            continue
        res = ik.solve(target)
        assert res.converged, (k, res)
        steps.append(np.abs(res.q_rad - q).max())
        q = res.q_rad
    assert max(steps) < 0.05  # rad per 33 ms frame: smooth, including at the clutch events
