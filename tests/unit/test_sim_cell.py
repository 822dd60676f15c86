"""The simulated cell's core: command semantics, holding on bad commands, and camera geometry, for the shipped cell
of every robot profile."""

import numpy as np
import pytest

from dexstack.calibration import load_camera_calibration
from dexstack.control.commands import CommandError
from dexstack.sim import SimCell
from dexstack.sim.camera import SimCamera
from tests.profiles import PROFILES, cell_for


@pytest.fixture(scope="module", params=PROFILES)
def cell(request):
    return SimCell(cell_for(request.param))


def test_robot_holds_home_and_object_rests_on_the_table(cell):
    cell.reset()
    q0 = cell.joint_state().position_rad
    cell.step(1000)
    np.testing.assert_allclose(cell.joint_state().position_rad, q0, atol=2e-3)
    z = cell.object_pose()[2, 3]
    assert z == pytest.approx(cell.cell.object.size_m[2] / 2, abs=2e-3)


def test_arm_trajectory_and_hand_command_move_the_joints(cell):
    cell.reset()
    d = cell.description
    n_arm = len(d.arm_joints)
    arm_goal = d.home(d.arm_joints) + np.resize([0.3, 0.2, 0, 0.2, 0, 0, -0.3], n_arm)
    hand_goal = d.home(d.hand_joints) + 0.4
    cell.command_arm_trajectory(list(reversed(d.arm_joints)), [arm_goal[::-1]], [0.5])
    cell.command_hand_positions(hand_goal)
    cell.step(250)
    mid = cell.joint_state().position_rad[:n_arm]
    assert 0.2 < (mid[0] - d.home(d.arm_joints)[0]) / 0.3 < 0.8  # interpolating, not jumping
    cell.step(1500)
    q = cell.joint_state().position_rad
    np.testing.assert_allclose(q[:n_arm], arm_goal, atol=5e-3)
    np.testing.assert_allclose(q[n_arm:], hand_goal, atol=3e-2)


def test_bad_commands_raise_and_the_robot_holds(cell):
    cell.reset()
    cell.step(200)
    before = cell.targets()
    d = cell.description
    with pytest.raises(CommandError):
        cell.command_hand_positions([0.1] * (len(d.hand_joints) - 1))
    with pytest.raises(CommandError):
        cell.command_hand_positions([float("nan")] * len(d.hand_joints))
    with pytest.raises(CommandError):
        cell.command_arm_trajectory(["bogus", *d.arm_joints[1:]], [[0.0] * len(d.arm_joints)], [1.0])
    cell.step(500)
    np.testing.assert_array_equal(cell.targets(), before)
    np.testing.assert_allclose(cell.joint_state().position_rad, before, atol=5e-3)


def test_depth_image_matches_the_table_plane_through_the_calibration(cell):
    """Depth at pixels that see the table equals the ray/plane intersection computed from the calibration."""
    cal = load_camera_calibration(cell.cell.calibration)
    cam = SimCamera(cell)
    try:
        cell.reset()
        image = cam.render()
    finally:
        cam.close()
    i = cal.intrinsics
    assert image.color_rgb8.shape == (i.height, i.width, 3) and image.depth_mm.dtype == np.uint16
    R, t = cal.T_parent_camera[:3, :3], cal.T_parent_camera[:3, 3]
    checked = 0
    for u, v in [(60, 470), (580, 470), (320, 450), (100, 300), (540, 300)]:
        ray_cam = np.linalg.solve(i.K, [u, v, 1.0])  # z = 1 in the optical frame
        ray_base = R @ ray_cam
        z_cam = -t[2] / ray_base[2]  # table top is the plane z = 0 in the base frame
        hit = t + z_cam * ray_base
        table = cell.cell.table
        inside = all(abs(hit[k] - table.center_xyz_m[k]) < table.size_m[k] / 2 - 0.02 for k in (0, 1))
        if not inside:
            continue
        checked += 1
        assert image.depth_mm[v, u] == pytest.approx(1000 * z_cam, abs=3.0), (u, v)
    assert checked >= 3


def test_friction_impedance_ratio_comes_from_the_cell_config(cell):
    """Issue 17 (c): MuJoCo's default impratio 1 let a grasped cube creep out of a static grip; the cell sets it."""
    from dexstack.sim.config import PhysicsConfig

    assert cell.model.opt.impratio == pytest.approx(cell.cell.physics.impratio)
    assert cell.cell.physics.impratio == pytest.approx(3.0)  # config/cells/tabletop.yaml
    for bad in (0.5, 500.0):
        with pytest.raises(ValueError, match="impratio"):
            PhysicsConfig(impratio=bad)


def test_render_multisamples_come_from_the_cell_config_and_bad_values_are_refused(tmp_path):
    from dexstack.sim.config import CellConfigError, load_cell_config

    assert SimCell("tabletop", with_camera=False).model.vis.quality.offsamples == 0  # set in tabletop.yaml
    assert SimCell("tabletop_bumped_camera", with_camera=False).model.vis.quality.offsamples == 4  # the default
    for render, why in (("{multisamples: 3}", "must be one of"), ("{samples: 4}", "samples")):
        path = tmp_path / "cell.yaml"
        path.write_text(f"name: bad\nrender: {render}\n")
        with pytest.raises(CellConfigError, match=why):
            load_cell_config(str(path))
