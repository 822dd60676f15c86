"""Start and end of a reference: anchoring to the perceived object, refusal beyond limits, holding after the end."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.policies import PolicyError, PolicyRuntime, RobotState, load_policy, load_reference, reference_path
from dexstack.policies.anchoring import AnchorLimits, anchor_reference
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics

D = load_description("panda_allegro")
N_ARM = len(D.arm_joints)
PALM = D.profile.hand.palm_link


@pytest.fixture(scope="module")
def lift():
    return load_reference(reference_path("lift"), D)


def moved(ref, dx, dy, dz=0.0):
    pose = ref.object_pose_at(0.0).copy()
    pose[:3] += (dx, dy, dz)
    return pose


def test_anchoring_translates_object_path_and_palm_after_the_approach(lift):
    a = anchor_reference(lift, moved(lift, 0.03, -0.04, 0.004), D)
    np.testing.assert_allclose(a.shift_m, [0.03, -0.04, 0.0])  # height differences are checked, not applied
    np.testing.assert_allclose(a.reference.object_pose[:, :3] - lift.object_pose[:, :3],
                               np.tile([0.03, -0.04, 0.0], (len(lift.times_s), 1)), atol=1e-12)
    np.testing.assert_array_equal(a.reference.q_rad[0], lift.q_rad[0])  # the robot starts where it is
    np.testing.assert_array_equal(a.reference.q_rad[:, N_ARM:], lift.q_rad[:, N_ARM:])  # hand unchanged
    kin = Kinematics(D)
    for t in (4.0, 5.5, 7.3, 8.0):  # grasp, lift, end: the palm keeps its place relative to the object
        k = int(np.searchsorted(lift.times_s, t))
        T0, T1 = kin.frame_pose(lift.q_rad[k], PALM), kin.frame_pose(a.reference.q_rad[k], PALM)
        np.testing.assert_allclose(T1[:3, 3] - T0[:3, 3], [0.03, -0.04, 0.0], atol=1.5e-3)
        np.testing.assert_allclose(T1[:3, :3], T0[:3, :3], atol=5e-3)


def test_small_offsets_keep_the_reference_and_large_ones_are_refused_with_the_reason(lift):
    assert anchor_reference(lift, moved(lift, 0.002, 0.001), D).reference is lift
    with pytest.raises(PolicyError, match=r"10.0 cm apart \(limit 6.0 cm\)"):
        anchor_reference(lift, moved(lift, 0.06, 0.08), D)
    with pytest.raises(PolicyError, match="in height"):
        anchor_reference(lift, moved(lift, 0.0, 0.0, 0.05), D)
    with pytest.raises(ValueError, match="near_m"):
        AnchorLimits(near_m=0.0)


def run(runtime, q, obj, t):
    return runtime.step(RobotState(q=q, dq=np.zeros_like(q), object_pose=obj), t)


def test_tracking_policy_anchors_at_start_refuses_far_objects_and_holds_after_the_end(lift):
    policy = load_policy("track_cube", D, reference=lift)
    runtime = PolicyRuntime(D)
    runtime.stage(policy)
    q = lift.q_at(0.0)
    run(runtime, q, moved(lift, 0.02, 0.03), 0.0)
    assert policy.status["phase"] == "tracking"
    np.testing.assert_allclose([float(v) for v in policy.status["anchor_shift_m"].split()], [0.02, 0.03, 0.0])
    assert policy.reference.object_pose_at(0.0)[1] == pytest.approx(0.03)
    # after the end: the last targets sent, again and again, whatever the state says
    last = run(runtime, lift.q_at(lift.duration_s), moved(lift, 0.02, 0.03), lift.duration_s - 0.05)
    held = [run(runtime, lift.q_at(lift.duration_s) + 0.01 * k, moved(lift, 0.0, 0.0), lift.duration_s + 0.05 * k)
            for k in range(1, 4)]
    for h in held:
        np.testing.assert_array_equal(h.arm, last.arm)
        np.testing.assert_array_equal(h.hand, last.hand)
    assert policy.status["phase"] == "holding the reference's end"
    # a restart with the object far away: nothing is sent, with the reason, until a restart with it in reach
    runtime.restart()
    for k in range(2):
        with pytest.raises(PolicyError, match="cm apart"):
            run(runtime, q, moved(lift, 0.0, 0.12), 100.0 + 0.05 * k)
    runtime.restart()
    assert run(runtime, q, moved(lift, 0.0, 0.0), 200.0) is not None
    assert policy.status["phase"] == "tracking"
