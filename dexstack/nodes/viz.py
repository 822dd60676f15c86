"""viz node: draws the live graph with Rerun (web viewer on 127.0.0.1 and/or an .rrd file).

It never slows the control loop: it is its own process, every subscription is best-effort with depth 1 (the
publisher never waits for it, and a slow draw drops the frames in between instead of queueing them), and each
stream is throttled (``*_hz`` parameters). Run it with ``dexstack-viz --web`` (see ``dexstack/cli/viz.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from dexstack.calibration import load_camera_calibration
from dexstack.diagnostics import Level, StatusReport
from dexstack.nodes import common
from dexstack.perception.objects import load_object_model
from dexstack.robot.description import load_description
from dexstack.viz.scene import SceneLogger, VizRates, VizTopics
from dexstack.viz.server import WebViewer, open_recording

# Latest only, never acknowledged: the viewer cannot back-pressure a publisher or build a queue.
VIEWER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def _default_save_path() -> str:
    return f"runs/viz_{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}.rrd"


@dataclass
class Params:
    robot_profile: str = common.param("panda_allegro", "Robot profile: meshes, joint names, driver topics.",
                                      read_only=True)
    calibration: str = common.param("sim_tabletop", "Camera calibration (calibration/<name>/camera.yaml or a path): "
                                    "camera pose and frustum; '' for none.", read_only=True)
    object: str = common.param("cube", "Object model drawn at /dexstack/object_pose (config/objects/<name>.yaml); "
                               "'' for axes only.", read_only=True)
    web: bool = common.param(False, "Serve Rerun's web viewer on 127.0.0.1 (its address is logged).", read_only=True)
    web_port: int = common.param(9090, "Port of the web viewer page (0: any free port).", read_only=True,
                                 min=0, max=65535)
    grpc_port: int = common.param(9876, "Port of the viewer's gRPC stream (0: any free port).", read_only=True,
                                  min=0, max=65535)
    save_path: str = common.param("", "Also write the recording to this .rrd file. Without web and without a "
                                  "path, it is saved to runs/viz_<UTC time>.rrd.", read_only=True)
    image_hz: float = common.param(5.0, "Most RGB frames drawn per second.", read_only=True, min=0.1, max=60.0)
    depth_hz: float = common.param(2.0, "Most depth frames / point clouds drawn per second.", read_only=True,
                                   min=0.1, max=60.0)
    joint_states_hz: float = common.param(15.0, "Most robot poses drawn per second.", read_only=True,
                                          min=0.1, max=1000.0)
    commands_hz: float = common.param(30.0, "Most commands per topic drawn per second.", read_only=True,
                                      min=0.1, max=1000.0)
    poses_hz: float = common.param(15.0, "Most hand/object poses drawn per second.", read_only=True, min=0.1, max=100.0)
    cloud_stride: int = common.param(4, "Point cloud: every n-th depth pixel in u and v.", read_only=True,
                                     min=1, max=64)
    diagnostics_rate_hz: float = common.param(0.5, "Rate of /diagnostics.", read_only=True, min=0.1, max=10.0)


class VizNode(Node):
    def __init__(self) -> None:
        super().__init__("viz")
        self.params = p = common.declare_params(self, Params)
        description = load_description(p.robot_profile)
        calibration = load_camera_calibration(p.calibration) if p.calibration else None
        object_model = load_object_model(p.object) if p.object else None
        rates = VizRates(image_hz=p.image_hz, depth_hz=p.depth_hz, joint_states_hz=p.joint_states_hz,
                         commands_hz=p.commands_hz, poses_hz=p.poses_hz, cloud_stride=p.cloud_stride)
        self.web: WebViewer | None = None
        if p.web:
            self.web = WebViewer(web_port=p.web_port, grpc_port=p.grpc_port).start()
        self.save_path = p.save_path or (None if p.web else _default_save_path())
        self.rec = open_recording(f"live_{int(time.time())}", self.save_path, self.web)
        self.scene = SceneLogger(self.rec, description, calibration, object_model, VizTopics.for_profile(description),
                                 rates)
        self.scene.log_static()
        t = self.scene.topics
        types = {t.color: Image, t.depth: Image, t.color_info: CameraInfo, t.joint_states: JointState,
                 t.hand_keypoints: PoseArray, t.wrist_pose: PoseStamped, t.object_pose: PoseStamped,
                 t.object_pose_gt: PoseStamped, t.arm_before: JointTrajectory, t.arm_after: JointTrajectory,
                 t.hand_before: Float64MultiArray, t.hand_after: Float64MultiArray, t.diagnostics: DiagnosticArray}
        for topic, msg_type in types.items():
            self.create_subscription(msg_type, topic, self._callback(topic), VIEWER_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._publish_diagnostics)
        where = [f"web viewer: {self.web.url}"] if self.web else []
        where += [f"file: {self.save_path}"] if self.save_path else []
        self.get_logger().info("viewer ready; " + "; ".join(where))

    def _callback(self, topic: str):
        def on_message(msg) -> None:
            self.scene.handle(topic, msg, self.get_clock().now().nanoseconds)
        return on_message

    def _publish_diagnostics(self) -> None:
        values = {f"drawn[{k}]": str(v) for k, v in sorted(self.scene.drawn.items())}
        values.update({f"dropped[{k}]": str(v) for k, v in sorted(self.scene.dropped.items())})
        values["web_url"] = self.web.url if self.web else ""
        values["save_path"] = self.save_path or ""
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("viz", Level.OK, "drawing", values)]))

    def close(self) -> None:
        try:
            self.rec.flush()
            self.rec.disconnect()
        finally:
            if self.web is not None:
                self.web.close()


def main(args: list[str] | None = None) -> None:
    common.run_node(VizNode, args)


if __name__ == "__main__":
    main()
