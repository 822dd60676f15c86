"""The viewer's core without ROS: geometry it draws, throttling, safety events, an episode to .rrd, the CLI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest

from dexstack.calibration import load_camera_calibration
from dexstack.cli.viz import main as viz_main
from dexstack.perception.objects import load_object_model
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from dexstack.viz.robot_model import RobotModel
from dexstack.viz.scene import TIMELINE, SceneLogger, VizRates, default_blueprint, vertex_normals
from dexstack.viz.server import WebViewer, open_recording
from tests.rrd import read_rrd

D = load_description("panda_allegro")
CAL = load_camera_calibration("sim_tabletop")
T0 = 1_700_000_000_000_000_000


def header(t_ns: int):
    return NS(stamp=NS(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000), frame_id="panda_link0")


def test_robot_links_follow_the_description_kinematics():
    model = RobotModel(D)
    assert {"panda_link3", "palm_link", "link_15.0_tip"} <= set(model.shapes)
    kin = Kinematics(D)
    rng = np.random.default_rng(0)
    lim = D.limit_arrays()
    for _ in range(3):
        q = rng.uniform(lim["lower"], lim["upper"])
        poses = model.link_poses(D.joints, q)
        for link in ("panda_link7", "palm_link", "link_3.0_tip"):
            np.testing.assert_allclose(poses[link], kin.frame_pose(q, link), atol=1e-9)


def test_vertex_normals_point_out_of_a_tetrahedron():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    n = vertex_normals(v, f)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    centre = v.mean(axis=0)
    assert np.all(np.sum(n * (v - centre), axis=1) > 0)
    np.testing.assert_allclose(n[0], -np.ones(3) / np.sqrt(3), atol=1e-12)


def test_point_cloud_back_projects_a_plane_into_the_base_frame():
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    depth = np.full((480, 640), 800, dtype=np.uint16)  # a wall 0.8 m in front of the camera
    depth[:10] = 0  # holes are skipped
    T = np.eye(4)
    T[:3, 3] = (0.1, -0.2, 0.5)
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[..., 0] = 200
    points, colors = SceneLogger.point_cloud(depth, K, T, rgb, stride=4)
    assert len(points) == 120 * 160 - 3 * 160  # rows 0, 4, 8 are holes
    np.testing.assert_allclose(points[:, 2], 0.5 + 0.8, atol=1e-6)
    # pixel (u=320, v=240) is on the optical axis: x = y = 0 in the camera frame
    centre = points[np.argmin(np.linalg.norm(points[:, :2] - [0.1, -0.2], axis=1))]
    np.testing.assert_allclose(centre, [0.1, -0.2, 1.3], atol=1e-6)
    # corner pixel (0, 476) -> x = -320 / 500 * 0.8
    assert np.isclose(points[:, 0].min(), 0.1 - 0.512, atol=1e-6)
    assert colors.shape == (len(points), 3) and np.all(colors[:, 0] == 200)


def test_rates_are_checked():
    with pytest.raises(ValueError, match="image_hz"):
        VizRates(image_hz=0.0)
    with pytest.raises(ValueError, match="cloud_stride"):
        VizRates(cloud_stride=0)


def _scene(tmp_path: Path, **rates) -> tuple[SceneLogger, Path]:
    path = tmp_path / "scene.rrd"
    rec = open_recording("unit", path)
    scene = SceneLogger(rec, D, CAL, load_object_model("cube"), rates=VizRates(**rates))
    scene.log_static()
    return scene, path


def _diag(t_ns: int, total: int, counts: dict[str, int], level: int = 1, message: str = "intervening"):
    values = [NS(key="interventions_total", value=str(total))]
    values += [NS(key=f"count[{k}]", value=str(v)) for k, v in counts.items()]
    status = NS(level=bytes([level]), name="safety_monitor", message=message, hardware_id="safety_monitor",
                values=values)
    return NS(header=header(t_ns), status=[status])


def test_scene_throttles_draws_hands_and_reports_interventions(tmp_path):
    scene, path = _scene(tmp_path, joint_states_hz=10.0)
    t = scene.topics
    q = D.home()
    drawn = [scene.handle(t.joint_states, NS(header=header(T0 + i * 1_000_000), name=list(D.joints), position=q),
                          0) for i in range(250)]  # 1 kHz for 0.25 s -> 3 drawn at 10 Hz
    assert sum(drawn) == 3 and scene.dropped[t.joint_states] == 247
    keypoints = np.random.default_rng(1).normal(size=(21, 3)) * 0.05 + [0.5, 0.0, 0.3]
    poses = [NS(position=NS(x=p[0], y=p[1], z=p[2]), orientation=NS(x=0, y=0, z=0, w=1)) for p in keypoints]
    assert scene.handle(t.hand_keypoints, NS(header=header(T0), poses=poses), 0)
    assert scene.handle(t.hand_keypoints, NS(header=header(T0 + 200_000_000), poses=[]), 0)  # no hand: cleared
    scene.handle(t.diagnostics, _diag(T0, 0, {}, level=0, message="passing commands"), 0)
    scene.handle(t.diagnostics, _diag(T0 + 10**9, 3, {"workspace": 2, "velocity": 1}), 0)
    scene.handle(t.diagnostics, _diag(T0 + 2 * 10**9, 3, {"workspace": 2, "velocity": 1}), 0)  # nothing new
    scene.handle(t.diagnostics, _diag(T0 + 3 * 10**9, 4, {"workspace": 2, "velocity": 1}, 2, "E-STOP latched"), 0)
    # commands without stamps take their arrival time; the hand command has no names: the profile's hand joints
    hand = np.linspace(0.0, 0.5, len(D.hand_joints))
    assert scene.handle(t.hand_before, NS(data=hand), T0 + 5 * 10**9)
    scene.rec.flush()
    scene.rec.disconnect()
    entities = read_rrd(path)
    rows = [r for r in entities["/world/hand/keypoints"] if r.get("ros_time")]
    np.testing.assert_allclose(np.array(rows[0]["positions"]), keypoints, atol=1e-6)
    assert rows[-1]["ros_time"] == T0 + 200_000_000  # the clear
    texts = [r["text"][0] for r in entities["/events/safety"]]
    assert texts == ["interventions: velocity +1, workspace +2", "E-STOP latched"]
    totals = [r["scalars"][0] for r in entities["/safety/interventions_total"] if r.get("scalars")]
    assert totals == [0, 3, 3, 4]
    last = D.hand_joints[-1]
    rows = [r for r in entities[f"/joints/{last}/before_gate"] if r.get("scalars")]
    assert rows[0]["scalars"][0] == pytest.approx(0.5) and rows[0]["ros_time"] == T0 + 5 * 10**9


def test_episode_to_rrd_from_the_cli(tmp_path):
    from tests.unit.test_record_export import make_episode

    episode = make_episode(tmp_path / "rec", 1.0, "wave", True)
    out = tmp_path / "episode.rrd"
    assert viz_main([str(episode), "--save", str(out)]) == 0
    entities = read_rrd(out)
    for entity in ("/world/camera/image/rgb", "/world/camera/image/depth", "/world/points",
                   "/joints/panda_joint1/measured", "/joints/panda_joint1/before_gate",
                   f"/joints/{D.hand_joints[0]}/after_gate", "/world/robot/panda_link4"):
        assert any(r.get("ros_time") for r in entities.get(entity, [])), entity
    images = [r for r in entities["/world/camera/image/rgb"] if r.get("ros_time")]
    assert 4 <= len(images) <= 6  # 10 Hz recorded, drawn at 5 Hz
    # 128x96 images without camera_info: the calibration's 640x480 intrinsics are scaled to them
    pinhole = [r for r in entities["/world/camera/image"] if r.get("resolution")][-1]
    assert pinhole["resolution"][0] == [128, 96]
    np.testing.assert_allclose(np.array(pinhole["image_from_camera"][0])[0], CAL.intrinsics.fx * 128 / 640)


def test_cli_reports_a_missing_episode(tmp_path, capsys):
    assert viz_main([str(tmp_path / "nope")]) == 2
    assert "no such episode directory" in capsys.readouterr().err


def test_web_viewer_binds_loopback_only():
    viewer = WebViewer().start()
    try:
        import psutil

        listening = {c.laddr for c in psutil.Process(viewer.process.pid).net_connections() if c.status == "LISTEN"}
        assert {a.port for a in listening} >= {viewer.web_port, viewer.grpc_port}
        assert {a.ip for a in listening} == {"127.0.0.1"}
        assert viewer.url.startswith(f"http://127.0.0.1:{viewer.web_port}/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1")
        assert "--newest-first" in psutil.Process(viewer.process.pid).cmdline()  # a late page sees the robot now
    finally:
        viewer.close()
    assert viewer.process is None


@pytest.mark.parametrize("live", [True, False])
def test_the_viewer_opens_on_the_one_timeline_the_recording_has(live):
    # the recording has no log_time (open_recording disables it); left to itself the viewer could pick log_time
    # and show every view empty but the static meshes
    panel = default_blueprint(live).time_panel
    assert panel.timeline == TIMELINE == "ros_time"
    assert panel.play_state == ("following" if live else None)


def test_a_taken_port_is_a_clear_error(tmp_path, capsys):
    import socket

    from tests.unit.test_record_export import make_episode

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        episode = make_episode(tmp_path / "rec", 0.2, "x", None)
        assert viz_main([str(episode), "--web", "--web-port", str(port), "--grpc-port", "0"]) == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
