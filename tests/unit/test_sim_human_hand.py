"""The rendered human hand of the sim cell: proportions, exact keypoints, kinematic (no contact), carrying the
object, the command codec and the gesture script."""

import dataclasses

import mujoco
import numpy as np
import pytest

from dexstack.perception.hand import MIDDLE_MCP, WRIST, check_bone_lengths
from dexstack.retarget.keypoints import hand_frame_from_keypoints
from dexstack.sim import SimCell, load_cell_config
from dexstack.sim.human_hand import (
    JOINTS,
    POSES,
    PREFIX,
    HumanHandCommand,
    HumanHandConfig,
    HumanHandKinematics,
)
from dexstack.teleop.scripted_hand import GestureScript
from dexstack.transforms import make_transform, rpy_to_matrix


@pytest.fixture(scope="module")
def cell():
    return SimCell("tabletop_teleop", with_camera=False)


def _pose(xyz, rpy) -> np.ndarray:
    return make_transform(xyz, rpy_to_matrix(rpy))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("size_m", [0.17, 0.185, 0.20])
def test_proportions_and_the_hand_frame_are_human(side, size_m):
    kin = HumanHandKinematics(HumanHandConfig(enabled=True, side=side, wrist_to_middle_tip_m=size_m))
    T = _pose((0.3, -0.5, 0.2), (0.4, -0.3, 1.2))
    for name, q in POSES.items():
        kp = kin.keypoints(T, q)
        assert check_bone_lengths(kp) is None, name
    kp = kin.keypoints(T, np.zeros(len(JOINTS)))  # straight fingers: wrist -> middle tip is the hand size
    assert np.linalg.norm(kp[12] - kp[WRIST]) == pytest.approx(size_m, abs=0.002)
    # the keypoints give back the wrist pose the hand was placed at (x along the fingers, z out of the palm)
    T_back = hand_frame_from_keypoints(kp, side)
    np.testing.assert_allclose(T_back[:3, 3], T[:3, 3], atol=1e-9)
    assert np.degrees(np.arccos((np.trace(T_back[:3, :3].T @ T[:3, :3]) - 1) / 2)) < 2.0
    assert np.dot(kp[MIDDLE_MCP] - kp[WRIST], T[:3, 0]) > 0.08


def test_pinch_closes_thumb_and_index_and_power_curls_every_finger():
    kin = HumanHandKinematics()
    T = np.eye(4)
    open_, pinch, power = (kin.keypoints(T, POSES[n]) for n in ("open", "pinch", "power"))
    assert np.linalg.norm(pinch[4] - pinch[8]) < 0.025 < np.linalg.norm(open_[4] - open_[8]) - 0.05
    for tip in (8, 12, 16, 20):
        assert np.linalg.norm(power[tip] - power[WRIST]) < 0.6 * np.linalg.norm(open_[tip] - open_[WRIST])


def test_hand_is_kinematic_never_touches_and_its_sites_are_exact(cell):
    cell.reset()
    hh_geoms = [g for g in range(cell.model.ngeom)
                if mujoco.mj_id2name(cell.model, mujoco.mjtObj.mjOBJ_BODY,
                                     cell.model.geom_bodyid[g]).startswith(PREFIX)]
    assert len(hh_geoms) > 15
    assert all(cell.model.geom_contype[g] == 0 and cell.model.geom_conaffinity[g] == 0 for g in hh_geoms)
    # Put the hand right through the cube: no contact, the cube does not move; the hand holds its pose.
    T = _pose(cell.cell.object.initial_xyz_m, (np.pi, 0.0, 0.0))
    cell.set_human_hand(T, POSES["power"])
    cube_before = cell.object_pose()
    q_robot = cell.joint_state().position_rad
    cell.step(300)
    touching = {cell.data.contact[i].geom1 for i in range(cell.data.ncon)} | \
        {cell.data.contact[i].geom2 for i in range(cell.data.ncon)}
    assert not touching & set(hh_geoms)
    np.testing.assert_allclose(cell.object_pose()[:3, 3], cube_before[:3, 3], atol=1e-3)
    np.testing.assert_allclose(cell.joint_state().position_rad, q_robot, atol=2e-3)
    expected = HumanHandKinematics(cell.cell.human_hand).keypoints(T, POSES["power"])
    np.testing.assert_allclose(cell.human_hand_keypoints(), expected, atol=1e-9)


def test_grasp_carries_the_object_and_release_drops_it(cell):
    cell.reset()
    obj = np.array(cell.cell.object.initial_xyz_m)
    T = _pose(obj + [-0.05, 0.0, 0.06], (np.pi, 0.0, 0.0))
    cell.set_human_hand(T, POSES["power"], grasp=False)
    cell.step(100)
    cell.set_human_hand(T, POSES["power"], grasp=True)
    assert cell.human_hand_grasping()
    start = cell.object_pose()[:3, 3]
    for k in range(1, 41):  # lift 0.2 m and turn 0.5 rad about z over 0.4 s
        T_k = _pose(obj + [-0.05, 0.0, 0.06 + 0.005 * k], (np.pi, 0.0, 0.0125 * k))
        cell.set_human_hand(T_k, POSES["power"])
        cell.step(10)
    cell.step(200)
    lifted = cell.object_pose()
    assert lifted[2, 3] - start[2] == pytest.approx(0.2, abs=0.01)
    # the object keeps its pose relative to the hand
    rel_before = np.linalg.inv(T) @ make_transform(start, np.eye(3))
    rel_after = np.linalg.inv(T_k) @ lifted
    np.testing.assert_allclose(rel_after[:3, 3], rel_before[:3, 3], atol=0.01)
    cell.set_human_hand(T_k, POSES["open"], grasp=False)
    cell.step(600)
    assert not cell.human_hand_grasping()
    assert cell.object_pose()[2, 3] == pytest.approx(cell.cell.object.size_m[2] / 2, abs=0.01)  # back on the table


def test_bad_hand_input_is_refused_and_the_hand_stays(cell):
    cell.reset()
    T = _pose((0.3, -0.9, 0.3), (np.pi, 0, 0))
    cell.set_human_hand(T, POSES["open"])
    before = cell.human_hand_keypoints()
    for bad in ((T, np.full(len(JOINTS), np.nan)), (T, np.zeros(3)), (np.full((4, 4), np.inf), POSES["open"])):
        with pytest.raises(ValueError):
            cell.set_human_hand(*bad)
    np.testing.assert_array_equal(cell.human_hand_keypoints(), before)
    with pytest.raises(ValueError, match="no human hand"):
        SimCell("tabletop", with_camera=False).set_human_hand(T, POSES["open"])


def test_command_codec_round_trip_and_errors():
    T = _pose((0.1, -0.2, 0.3), (0.3, 0.2, -1.0))
    names, values = HumanHandCommand(T, POSES["pinch"], grasp=True).encode()
    back = HumanHandCommand.decode(names[::-1], values[::-1])  # any order
    np.testing.assert_allclose(back.T_base_wrist, T, atol=1e-12)
    np.testing.assert_allclose(back.q_rad, POSES["pinch"])
    assert back.grasp
    with pytest.raises(ValueError, match="missing"):
        HumanHandCommand.decode(names[:-1], values[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        HumanHandCommand.decode(names, [float("nan")] + values[1:])
    with pytest.raises(ValueError, match="names but"):
        HumanHandCommand.decode(names, values[:-1])


def test_config_options_are_checked():
    assert not load_cell_config("tabletop").human_hand.enabled
    c = load_cell_config("tabletop_teleop")
    assert c.human_hand.enabled and c.operator_calibration == "sim_operator"
    for bad in ({"side": "middle"}, {"wrist_to_middle_tip_m": 0.5}, {"skin_rgba": (1.0, 0.5, 0.5)}):
        with pytest.raises(ValueError):
            dataclasses.replace(c.human_hand, **bad)


def test_gesture_script_is_smooth_covers_the_gestures_and_loops():
    kin = HumanHandKinematics()
    script = GestureScript(_pose((0.35, -0.95, 0.3), (np.pi, 0, 0)))
    t = np.arange(0.0, script.period_s, 1 / 30)
    frames = [script(ti) for ti in t]
    kps = np.array([kin.keypoints(T, q) for T, q, _ in frames])
    step_mm = 1000 * np.linalg.norm(np.diff(kps, axis=0), axis=2).max()
    assert step_mm < 25.0  # no jumps between camera frames at 30 Hz
    np.testing.assert_allclose(kps[0], kin.keypoints(*script(script.period_s)[:2]), atol=1e-9)  # loops
    rolls = [np.degrees(np.arctan2(T[2, 1], T[2, 2])) for T, _, _ in frames]  # wrist roll about the forearm
    spread = np.ptp(np.unwrap(np.radians(rolls)))
    assert np.degrees(spread) == pytest.approx(120.0, abs=2.0)  # +/-60 deg
    shapes = {name: min(np.abs(q - POSES[name]).max() for _, q, _ in frames) for name in POSES}
    assert max(shapes.values()) < 1e-6  # every named shape is reached
    offsets = [np.linalg.norm(T[:3, 3] - frames[0][0][:3, 3]) for T, _, _ in frames]
    assert max(offsets) > 0.25  # the segment that leaves the operator camera's view
