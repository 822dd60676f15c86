"""Command validation (as ros2_control controllers check commands) and trajectory execution."""

import math

import numpy as np
import pytest

from dexstack.control.commands import CommandError, validate_positions, validate_trajectory
from dexstack.control.trajectory import TrajectoryFollower

JOINTS = ("a", "b", "c")


def test_trajectory_is_reordered_to_the_expected_joints():
    times, q = validate_trajectory(["c", "a", "b"], [[3, 1, 2], [6, 4, 5]], [0.5, 1.0], JOINTS)
    np.testing.assert_array_equal(q, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(times, [0.5, 1.0])


@pytest.mark.parametrize("names,points,times,reason", [
    ([], [], [], "names no joints"),
    (["a", "a", "b", "c"], [[0, 0, 0, 0]], [1.0], "more than once"),
    (["a", "b", "x"], [[0, 0, 0]], [1.0], "unknown joints"),
    (["a", "b"], [[0, 0]], [1.0], "missing joints"),
    (["a", "b", "c"], [[0, 0]], [1.0], "2 positions for 3 joints"),
    (["a", "b", "c"], [[0, math.nan, 0]], [1.0], "non-finite"),
    (["a", "b", "c"], [[0, math.inf, 0]], [1.0], "non-finite"),
    (["a", "b", "c"], [[0, 0, 0], [1, 1, 1]], [1.0, 1.0], "strictly increasing"),
    (["a", "b", "c"], [[0, 0, 0]], [-1.0], "non-negative"),
])
def test_malformed_trajectories_are_rejected_with_a_reason(names, points, times, reason):
    with pytest.raises(CommandError, match=reason):
        validate_trajectory(names, points, times, JOINTS)


def test_position_commands_need_the_right_length_and_finite_values():
    np.testing.assert_array_equal(validate_positions([1, 2, 3], 3), [1, 2, 3])
    with pytest.raises(CommandError, match="has 2 values, expected 3"):
        validate_positions([1, 2], 3)
    with pytest.raises(CommandError, match=r"indices \[1\]"):
        validate_positions([1, math.nan, 3], 3)


def test_follower_ramps_from_the_current_setpoint_then_holds():
    f = TrajectoryFollower(np.zeros(2))
    f.set(10.0, np.array([1.0, 2.0]), np.array([[1.0, 2.0], [3.0, 2.0]]))
    np.testing.assert_allclose(f.sample(10.0), [0, 0])
    np.testing.assert_allclose(f.sample(10.5), [0.5, 1.0])
    np.testing.assert_allclose(f.sample(11.5), [2.0, 2.0])
    np.testing.assert_allclose(f.sample(99.0), [3.0, 2.0])


def test_new_trajectory_starts_where_the_old_one_is_and_empty_means_hold():
    f = TrajectoryFollower(np.zeros(1))
    f.set(0.0, np.array([1.0]), np.array([[1.0]]))
    f.set(0.5, np.array([1.0]), np.array([[-1.0]]))  # preempt half way
    np.testing.assert_allclose(f.sample(0.5), [0.5])
    np.testing.assert_allclose(f.sample(1.0), [-0.25])
    f.set(1.0, np.array([]), np.empty((0, 1)))
    np.testing.assert_allclose(f.sample(5.0), [-0.25])
