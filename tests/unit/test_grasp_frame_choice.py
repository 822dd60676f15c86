"""dexstack/grasp/frame_choice.py: the seen hand picks among a symmetric object's equivalent fitted frames, and
never corrects the fit otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.grasp.frame_choice import hand_consistent_frame
from dexstack.grasp.human_grasps import library
from dexstack.perception.objects import load_object_model
from dexstack.transforms import make_transform, rotation_angle_rad, rpy_to_matrix, transform_points

T_TRUE = make_transform((0.5, 0.05, 0.04), rpy_to_matrix([0.0, 0.0, 0.3]))


def _fit(turn_rpy, shift_m=(0.001, -0.001, 0.0)):
    """A fit in the object's frame turned by ``turn_rpy`` about its origin, ``shift_m`` off."""
    T = T_TRUE @ make_transform((0.0, 0.0, 0.0), rpy_to_matrix(turn_rpy))
    T[:3, 3] += shift_m
    return T


def _rot_err_deg(T, ref):
    return float(np.degrees(rotation_angle_rad(T[:3, :3].T @ ref[:3, :3])))


@pytest.mark.parametrize("name, turn_rpy", [("cube", (0.0, 0.0, np.pi / 2)), ("cube", (np.pi, 0.0, 0.0)),
                                            ("can", (0.0, 0.0, 1.0)), ("lemon", (0.0, 0.0, -2.0)),
                                            ("ball", (1.5, 0.0, 0.0))])
def test_an_equivalent_frame_is_turned_to_the_hands(name, turn_rpy):
    model, kp = load_object_model(name), library(name)[0].keypoints_object_m
    fit = _fit(turn_rpy)
    choice = hand_consistent_frame(model, fit, transform_points(T_TRUE, kp), kp)
    assert choice.turned_deg > 5.0 and choice.surface_mm < 2.0
    assert _rot_err_deg(choice.T_base_object, T_TRUE) < 3.0
    assert choice.hand_rms_mm < 5.0
    # the fit's position error is kept: the hand only chooses the frame
    assert np.linalg.norm(choice.T_base_object[:3, 3] - fit[:3, 3]) < 2e-3


@pytest.mark.parametrize("name, turn_rpy", [("wedge", (0.0, 0.0, np.pi / 2)), ("juice_box", (0.0, 0.0, np.pi / 2)),
                                            ("cube", (0.0, 0.0, 0.35)), ("can", (0.0, 0.0, 0.05))])
def test_a_turn_that_changes_the_shape_or_is_small_is_not_taken(name, turn_rpy):
    """A wrong fit of an asymmetric object, a cube 20 deg off, a can 3 deg off: the fit stays as it is (the hand
    is no pose sensor)."""
    model, kp = load_object_model(name), library(name)[0].keypoints_object_m
    fit = _fit(turn_rpy)
    choice = hand_consistent_frame(model, fit, transform_points(T_TRUE, kp), kp)
    assert choice.turned_deg == 0.0 and np.array_equal(choice.T_base_object, fit)
