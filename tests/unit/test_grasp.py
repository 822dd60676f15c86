"""Functional grasping (issue 12): objects, the human grasp library, retargeting, refusals, the open-loop baseline."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.grasp.baseline import BaselineConfig, OpenLoopGrasp, UnreachableError, plan_arm
from dexstack.grasp.human_grasps import keypoint_radii_m, library, synthesize_grasp, touching_fingers
from dexstack.perception.objects import SPLITS, ObjectConfigError, known_objects, load_object_model
from dexstack.retarget.functional import FunctionalRetargeter, GraspRetargetError
from dexstack.retarget.keypoints import KeypointError
from dexstack.sim.cell import SimCell
from dexstack.sim.config import load_cell_config, with_object

OBJECTS = known_objects()


@pytest.fixture(scope="module")
def retargeter() -> FunctionalRetargeter:
    return FunctionalRetargeter()


def test_enough_objects_and_held_out_ones():
    assert len(OBJECTS) >= 11
    heldout = known_objects("heldout")
    assert len(heldout) >= 3
    shapes = {load_object_model(n).shape for n in OBJECTS}
    assert {"box", "cylinder", "sphere", "mesh"} <= shapes
    assert sum(bool(library(n)) for n in OBJECTS) >= 10  # nearly every object has a human grasp


@pytest.mark.parametrize("name", OBJECTS)
def test_object_config_signed_distance_and_sim(name):
    model = load_object_model(name)
    assert model.split in SPLITS and 0 < model.mass_kg < 2 and model.extents_m.min() > 0.02
    points, normals = model.surface_points(0.004)
    d_out, grad = model.signed_distance(points + 0.005 * normals)
    assert np.median(np.abs(d_out - 0.005)) < 5e-4  # 5 mm out along the normal is 5 mm away
    assert np.median(np.einsum("ij,ij->i", grad, normals)) > 0.99
    d_in, _ = model.signed_distance(points - 0.003 * normals)
    assert np.mean(d_in <= 1e-6) > 0.9 and np.median(d_in) < -0.001  # (edges of sharp wedges excepted)
    assert model.signed_distance(points.mean(0, keepdims=True))[0][0] < -0.01  # the centroid is inside
    # The sim cell builds it from the same file, and it rests on the table where its extents say.
    sim = SimCell(with_object(load_cell_config("tabletop_grasp"), name), with_camera=False)
    z0 = sim.object_pose()[2, 3]
    sim.step(300)
    assert abs(sim.object_pose()[2, 3] - z0) < 0.003
    assert abs(z0 - model.extents_m[2] / 2) < 0.001


@pytest.mark.parametrize("name", OBJECTS)
def test_human_grasps_touch_without_penetrating(name):
    model = load_object_model(name)
    for grasp in library(name):
        fingers, _ = touching_fingers(model, grasp.keypoints_object_m)
        assert set(grasp.contact_fingers) <= set(fingers) and "thumb" in fingers
        d, _ = model.signed_distance(grasp.keypoints_object_m)
        assert (d - keypoint_radii_m()).min() > -0.004  # the skin does not sink into the object


def test_synthesis_matches_the_shipped_library():
    model = load_object_model("cube")
    fresh = synthesize_grasp(model, "top_precision")
    shipped = library("cube")[0]
    assert fresh is not None and np.allclose(fresh.T_object_H, shipped.T_object_H, atol=1e-5)
    assert np.allclose(fresh.q_rad, shipped.q_rad, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in OBJECTS if library(n)])
def test_retargeting_keeps_contacts_without_penetration(name, retargeter):
    model = load_object_model(name)
    table_z = -model.extents_m[2] / 2
    for grasp in library(name):
        target = retargeter.retarget(model, grasp.keypoints_object_m, table_z_m=table_z)
        lower, upper = retargeter.hand.lower_rad, retargeter.hand.upper_rad
        assert np.all(target.q_hand_rad >= lower - 1e-9) and np.all(target.q_hand_rad <= upper + 1e-9)
        assert target.max_penetration_m <= 0.004
        # Independently of the solver's report: every constrained link is outside the object by its radius.
        d, _ = model.signed_distance(target.link_positions_object_m)
        radii = np.array([0.012 if link.endswith("_tip") else 0.0098 for link in target.link_names])
        assert (d - radii).min() > -0.005
        assert (target.link_positions_object_m[:, 2] - radii).min() > table_z  # above the table
        assert target.contact_match >= 0.4 and target.contact_mask.sum() >= 2
        # The pre-grasp is the same palm backed off along its normal, the hand as open as fits at the grasp pose.
        backoff = target.T_object_palm[:3, 3] - target.T_object_palm_pregrasp[:3, 3]
        assert np.linalg.norm(backoff) > 0.05 and backoff @ target.T_object_palm[:3, 0] > 0.05
        assert np.abs(target.q_pregrasp_rad).sum() <= np.abs(target.q_hand_rad).sum() + 1e-9


@pytest.mark.parametrize("name", ["ball", "cube", "wedge", "rod"])
def test_retargeting_keeps_the_arm_off_the_table(name, retargeter):
    """Top pinches of small objects: the wrist and the forearm behind the hand stay above the table by the safety
    gate's arm capsule (they turned the hand fingers-up and put the wrist on the table, refused by the arm plan)."""
    cfg = retargeter.config
    model = load_object_model(name)
    table_z = -model.extents_m[2] / 2
    for grasp in library(name):
        target = retargeter.retarget(model, grasp.keypoints_object_m, table_z_m=table_z)
        for z in cfg.arm_samples_z_m:
            p_object = target.T_object_palm @ np.array([0.0, 0.0, z, 1.0])
            assert p_object[2] - table_z > cfg.arm_min_height_m - 0.002, (grasp.kind, z)


def test_retargeting_reaches_the_human_contacts_on_a_primitive(retargeter):
    """Rod (a cylinder): every robot link mapped to a human contact ends on the surface, within 3 mm."""
    model = load_object_model("rod")
    grasp = library("rod")[0]
    target = retargeter.retarget(model, grasp.keypoints_object_m, table_z_m=-model.extents_m[2] / 2)
    d, _ = model.signed_distance(target.link_positions_object_m[target.contact_mask])
    radii = np.array([0.012 if n.endswith("_tip") else 0.0098
                      for n, c in zip(target.link_names, target.contact_mask) if c])
    assert np.abs(d - radii).max() < 0.003
    assert target.contact_match == 1.0
    assert set(target.robot_contact_fingers) >= {"thumb", "index"}
    assert np.abs(target.q_pregrasp_rad).sum() < 0.8 * np.abs(target.q_hand_rad).sum()  # a wrap opens first
    # The squeeze pose (palm fixed) puts the finger contact links inside the surface, toward squeeze_depth_m.
    links = [n for n, c in zip(target.link_names, target.contact_mask) if c]
    p_palm = retargeter.hand.link_positions(target.q_squeeze_rad, links)
    p_obj = p_palm @ target.T_object_palm[:3, :3].T + target.T_object_palm[:3, 3]
    d_squeeze, _ = model.signed_distance(p_obj)
    inside = d_squeeze - np.array([0.012 if n.endswith("_tip") else 0.0098 for n in links])
    assert np.median(inside) < -0.008 and inside.max() < 0.0



def test_refusals_name_the_cause(retargeter):
    model = load_object_model("can")
    kp = library("can")[0].keypoints_object_m
    with pytest.raises(GraspRetargetError, match="not touching"):
        retargeter.retarget(model, kp + np.array([0.0, 0.0, 0.3]))
    bad = kp.copy()
    bad[3] = np.nan
    with pytest.raises(KeypointError, match="NaN"):
        retargeter.retarget(model, bad)
    with pytest.raises(ObjectConfigError, match="known objects are .*'can'"):
        library("no_such_object")


def test_unreachable_target_is_refused_before_any_command(retargeter):
    model = load_object_model("can")
    target = retargeter.retarget(model, library("can")[0].keypoints_object_m, table_z_m=-0.06)
    sim = SimCell(with_object(load_cell_config("tabletop_grasp"), "can"), with_camera=False)
    baseline = OpenLoopGrasp(sim, finger_links=retargeter.config.finger_links)
    far = np.eye(4)
    far[:3, 3] = [2.0, 0.0, 0.06]  # 2 m in front of the robot base
    with pytest.raises(UnreachableError, match="unreachable pre-grasp pose"):
        plan_arm(baseline.ik, target, far, sim.joint_state().position_rad[:7], 0.1, BaselineConfig())
    assert np.allclose(sim.targets(), sim.description.home())  # nothing was commanded


def test_open_loop_baseline_lifts_the_can(retargeter):
    """Side power grasp of the can: pre-grasp, approach, close, lift 10 cm through the safety gate."""
    model = load_object_model("can")
    grasp = next(g for g in library("can") if g.kind == "side_power")
    target = retargeter.retarget(model, grasp.keypoints_object_m, table_z_m=-model.extents_m[2] / 2)
    sim = SimCell(with_object(load_cell_config("tabletop_grasp"), "can"), with_camera=False)
    result = OpenLoopGrasp(sim, finger_links=retargeter.config.finger_links).run(target)
    assert result.rise_m > 0.08 and result.slip_m < 0.02 and result.success
    assert "thumb" in result.touching_fingers and len(result.touching_fingers) >= 3


def test_hand_reaches_its_targets_without_the_urdf_friction():
    """tabletop_grasp drops the description's 5 N m finger friction: a finger servo reaches 0.8 rad in 0.5 s."""
    sim = SimCell("tabletop_grasp", with_camera=False)
    q = np.zeros(16)
    q[1] = 0.8
    sim.command_hand_positions(q)
    sim.step(500)
    assert abs(sim.joint_state().position_rad[7 + 1] - 0.8) < 0.05


def test_retargeting_uses_the_rendered_hands_finger_radii():
    from dexstack.retarget.functional import HUMAN_KEYPOINT_RADIUS_M

    assert np.allclose(HUMAN_KEYPOINT_RADIUS_M, keypoint_radii_m(), atol=1e-6)
