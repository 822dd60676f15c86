"""hand_pose as sim_visual_teleop runs it (operator camera, its own process, over DDS) fed rendered frames of the
operator's hand: a hand too close for valid depth and a second hand in view are reported on /diagnostics with their
reason, nothing wrong is published (an explicit "no hand", or still the operator's hand), and tracking comes back."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import dataclasses  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from dexstack.launch.runner import LaunchedGraph  # noqa: E402
from dexstack.launch.xml import parse_launch_file  # noqa: E402
from dexstack.nodes import common  # noqa: E402
from dexstack.nodes.camera_info import camera_info_msg  # noqa: E402
from tests.ros_harness import dump_logs, wait_for  # noqa: E402

pytest.importorskip("mediapipe")
NS = "/operator_camera/camera"


@pytest.fixture(scope="module")
def frames():
    """(color, depth, true keypoints) of: the operator's open hand; the same hand 0.45 m from the camera with a
    depth camera's minimum range (no depth nearer than 0.52 m); the operator's hand plus a bystander's left hand."""
    from dexstack.sim import SimCell, load_cell_config
    from dexstack.sim.camera import SimCamera
    from dexstack.sim.human_hand import POSES
    from dexstack.transforms import make_transform, rpy_to_matrix

    cell = SimCell("tabletop_teleop", with_camera=False)
    camera = SimCamera(cell, camera=cell.operator_camera)
    hh = cell.cell.human_hand
    rest = make_transform(hh.rest_xyz_m, rpy_to_matrix(hh.rest_rpy_rad))

    def render(sim, cam, T, q):
        sim.set_human_hand(T, q)
        image = cam.render()
        return image.color_rgb8, image.depth_mm, cam.keypoints()

    normal = render(cell, camera, rest, POSES["open"])
    toward = cell.operator_calibration.T_parent_camera[:3, 3] - rest[:3, 3]
    near = rest.copy()
    near[:3, 3] += 0.35 * toward / np.linalg.norm(toward)
    color, depth, gt = render(cell, camera, near, POSES["open"])
    too_close = (color, np.where(depth < 520, 0, depth).astype(np.uint16), gt)
    left_cell = SimCell(dataclasses.replace(load_cell_config("tabletop_teleop"),
                                            human_hand=dataclasses.replace(hh, side="left")), with_camera=False)
    left_camera = SimCamera(left_cell, camera=left_cell.operator_camera)
    T_left = rest.copy()
    T_left[:3, :3] = T_left[:3, :3] @ rpy_to_matrix((0.0, 0.0, np.pi))
    T_left[:3, 3] += (0.25, 0.22, 0.0)
    lc, ld, _ = render(left_cell, left_camera, T_left, POSES["relaxed"])
    nearer = (ld > 0) & ((ld < normal[1]) | (normal[1] == 0))
    two = (np.where(nearer[..., None], lc, normal[0]), np.where(nearer, ld, normal[1]).astype(np.uint16), normal[2])
    left_camera.close()
    camera.close()
    return {"normal": normal, "too_close": too_close, "two_hands": two, "calibration": cell.operator_calibration}


def test_too_close_and_second_hand_are_reported_and_tracking_recovers(ros_node, frames, tmp_path_factory):
    description = parse_launch_file("sim_visual_teleop", {})
    description.nodes = [n for n in description.nodes if n.name == "hand_pose"]
    graph = LaunchedGraph(description, log_dir=tmp_path_factory.mktemp("hand_faults_logs")).start()
    try:
        cal = frames["calibration"]
        color_pub = ros_node.create_publisher(Image, f"{NS}/color/image_raw", common.SENSOR_QOS)
        depth_pub = ros_node.create_publisher(Image, f"{NS}/aligned_depth_to_color/image_raw", common.SENSOR_QOS)
        info_pub = ros_node.create_publisher(CameraInfo, f"{NS}/aligned_depth_to_color/camera_info",
                                             common.SENSOR_QOS)
        keypoints, rejected = [], {}
        ros_node.create_subscription(PoseArray, "/dexstack/hand_keypoints", keypoints.append, common.STATE_QOS)

        def on_diag(msg):
            for s in msg.status:
                if s.name == "hand_pose":
                    rejected.update({kv.key: int(kv.value) for kv in s.values if kv.key.startswith("rejected[")})
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

        def show(name: str, seconds: float) -> list:
            """Publish one frame kind at 15 Hz; the keypoint messages answering it."""
            color, depth, _ = frames[name]
            h, w = depth.shape
            first, end = len(keypoints), time.monotonic() + seconds
            while time.monotonic() < end:
                stamp = ros_node.get_clock().now().to_msg()
                for pub, enc, step, data in ((color_pub, "rgb8", 3 * w, color), (depth_pub, "16UC1", 2 * w, depth)):
                    img = Image(height=h, width=w, encoding=enc, is_bigendian=0, step=step, data=data.tobytes())
                    img.header.stamp, img.header.frame_id = stamp, cal.frame_id
                    pub.publish(img)
                info_pub.publish(camera_info_msg(cal.intrinsics, stamp, cal.frame_id))
                time.sleep(1 / 15)
            time.sleep(0.3)
            return keypoints[first:]

        def points(msg) -> np.ndarray:
            return np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses])

        def tracked(answers) -> list:
            return [points(m) for m in answers if len(m.poses) == 21]

        # MediaPipe loads (seconds): the operator's hand is tracked where it is.
        assert wait_for(lambda: tracked(show("normal", 1.0)), 60.0), dump_logs(graph)
        home = tracked(show("normal", 1.0))[-1]
        assert np.median(np.linalg.norm(home - frames["normal"][2], axis=1)) < 0.02

        # Too close for depth: an explicit "no hand" every frame (nothing stale), the reason on /diagnostics.
        answers = show("too_close", 1.5)
        assert answers and not tracked(answers[2:]), [len(m.poses) for m in answers]
        assert wait_for(lambda: rejected.get("rejected[no depth]", 0) > 0, 3.0), rejected
        back = tracked(show("normal", 1.5))  # moved back: tracked again, in place
        assert back and np.linalg.norm(back[-1] - home, axis=1).max() < 0.02

        # A bystander's hand comes into view: still the operator's hand, no jump; the second hand is reported.
        with_two = tracked(show("two_hands", 1.5))
        assert with_two and max(np.linalg.norm(p - home, axis=1).max() for p in with_two) < 0.03
        assert wait_for(lambda: any(k.startswith(("rejected[second hand", "rejected[duplicate"))
                                    for k in rejected), 3.0), rejected
    finally:
        codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(graph)}"
