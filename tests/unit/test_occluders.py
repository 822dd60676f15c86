"""The robot's capsules against an object pose: how deep they reach into it, and the least motion that takes a
predicted pose out of the hand (``dexstack.perception.occluders``)."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.perception.objects import load_object_model
from dexstack.perception.occluders import Occluders
from dexstack.transforms import make_transform, rpy_to_matrix


@pytest.fixture(scope="module")
def cube():
    return load_object_model("cube")  # 50 mm box, origin at its centre


def _rod(z_m: float, radius_m: float = 0.01, x_m: float = 0.0) -> Occluders:
    """One capsule along y, above (or through) the cube's top face at height ``z_m`` (object at the origin)."""
    return Occluders(np.array([[x_m, -0.04, z_m]]), np.array([[x_m, 0.04, z_m]]), np.array([radius_m]))


def test_overlap_is_how_deep_a_capsule_reaches_into_the_object(cube):
    at_origin = np.eye(4)
    assert _rod(0.025 + 0.006).overlap_m(cube, at_origin) == pytest.approx(0.004, abs=1e-6)
    assert _rod(0.025 + 0.012).overlap_m(cube, at_origin) == 0.0  # 2 mm clear
    # the same rod in the object's frame after the object moved up 3 mm: 3 mm deeper
    assert _rod(0.031).overlap_m(cube, make_transform((0.0, 0.0, 0.003), np.eye(3))) == pytest.approx(0.007, abs=1e-6)
    # turned 45 deg about y, the top edge (at 25 sqrt(2) mm) is above the rod's axis: the depth is the way out,
    # the radius plus the axis's distance to the nearer face (at 45 deg: the edge's height above it / sqrt(2))
    turned = make_transform((0.0, 0.0, 0.0), rpy_to_matrix((0.0, np.pi / 4, 0.0)))
    expected = 0.01 + (0.025 * np.sqrt(2) - 0.031) / np.sqrt(2)
    assert _rod(0.031).overlap_m(cube, turned) == pytest.approx(expected, abs=1e-4)
    assert Occluders(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)).overlap_m(cube, at_origin) == 0.0


def test_a_pose_inside_the_hand_is_pushed_out_by_the_least_translation(cube):
    rod = _rod(0.025 + 0.006)  # 4 mm into the top face
    T = make_transform((0.0, 0.0, 0.0), rpy_to_matrix((0.0, 0.0, 0.3)))
    out = rod.push_out(cube, T, allowed_m=0.001)
    assert rod.overlap_m(cube, out) == pytest.approx(0.001, abs=2e-4)
    np.testing.assert_allclose(out[:3, 3], [0.0, 0.0, -0.003], atol=2e-4)  # straight down, 3 mm
    np.testing.assert_array_equal(out[:3, :3], T[:3, :3])  # never turned
    # already clear: returned unchanged
    clear = _rod(0.04)
    np.testing.assert_array_equal(clear.push_out(cube, T, 0.001), T)


def test_a_pose_between_two_fingers_is_centred_between_them(cube):
    # two capsules along z on either side, 54 mm apart between their surfaces: a 50 mm cube fits with 2 mm a side
    fingers = Occluders(np.array([[0.037, 0.0, -0.02], [-0.037, 0.0, -0.02]]),
                        np.array([[0.037, 0.0, 0.02], [-0.037, 0.0, 0.02]]), np.array([0.01, 0.01]))
    guessed = make_transform((0.006, 0.0, 0.0), np.eye(3))  # 4 mm into the +x finger
    out = fingers.push_out(cube, guessed, allowed_m=0.0)
    assert fingers.overlap_m(cube, out) < 2e-4
    assert out[0, 3] == pytest.approx(0.002, abs=3e-4)  # moved only as far as needed
    np.testing.assert_allclose(out[1:3, 3], 0.0, atol=1e-4)
