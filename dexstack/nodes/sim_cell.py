"""sim_cell: the MuJoCo simulation of the cell, behaving like the real drivers.

Publishes ``/joint_states`` (every arm and hand joint), the RGB-D camera under realsense-ros names, the robot
description, the object's ground-truth pose (evaluation only), ``/clock`` (the physics time, for nodes run with
``use_sim_time``) and ``/diagnostics``; accepts arm
``JointTrajectory`` and hand ``Float64MultiArray`` commands on the topics the robot profile names (the
ros2_control controller inputs). Malformed commands are rejected with a logged reason and the robot holds.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is imported

import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexstack.control.commands import CommandError  # noqa: E402
from dexstack.diagnostics import Level, ReasonCounter, StatusReport  # noqa: E402
from dexstack.nodes import common  # noqa: E402
from dexstack.nodes.sim_camera_stream import SimCameraStream  # noqa: E402
from dexstack.nodes.sim_operator import OperatorSide  # noqa: E402  (the rendered human hand, operator camera)
from dexstack.nodes.tf import TfPublisher  # noqa: E402
from dexstack.sim.cell import SimCell  # noqa: E402
from dexstack.sim.config import load_cell_config, with_object  # noqa: E402
from dexstack.sim.placement import object_start_pose  # noqa: E402
from dexstack.transforms import transform_to_pose  # noqa: E402

CAMERA_NS = "camera/camera"


@dataclass
class Params:
    cell: str = common.param("tabletop", "Cell configuration (config/cells/<name>.yaml or a path).", read_only=True)
    robot_profile: str = common.param(
        "", "The graph's robot profile: the cell must carry this robot ('': whichever the cell names).",
        read_only=True)
    joint_states_rate_hz: float = common.param(250.0, "Rate of /joint_states and ground truth.", min=10.0, max=1000.0)
    camera_enabled: bool = common.param(True, "Render and publish the RGB-D camera.", read_only=True)
    camera_rate_hz: float = common.param(15.0, "Camera frame rate (rendering is CPU-bound here).", min=1.0, max=60.0)
    publish_tf: bool = common.param(True, "Publish robot and camera TF when tf2_msgs is installed.", read_only=True)
    publish_joint_states: bool = common.param(
        True, "Publish /joint_states; false simulates a driver dropout (fault injection).")
    diagnostics_rate_hz: float = common.param(1.0, "Rate of /diagnostics.", min=0.1, max=10.0)
    camera_render_process: bool = common.param(
        True, "Render the cameras in a child process (false: in a thread of this node, sharing the GIL with physics).",
        read_only=True)
    camera_render_nice: int = common.param(
        10, "Niceness added to the render process: the kernel runs physics and the control path first.",
        read_only=True, min=0, max=19)
    operator_camera_rate_hz: float = common.param(
        15.0, "Operator camera frame rate, if the cell has one (0: off; see nodes/sim_operator.py).", read_only=True,
        min=0.0, max=60.0)
    publish_clock: bool = common.param(True, "Publish /clock (the physics time) with every joint state.",
                                       read_only=True)
    real_time_factor: float = common.param(
        1.0, "Physics pace: simulated seconds per wall second (1: real time; lower: slower, for graphs run with "
             "use_sim_time on a loaded machine).", min=0.01, max=1.0)
    object: str = common.param("", "Object on the table: config/objects/<name>.yaml replaces the cell's ('': the "
                                   "cell's own).", read_only=True)
    object_start: str = common.param(
        "", "Object's start pose: '' or 'cell' (the cell config's), 'reference:<name>' (that reference's start), "
            "or 'x y z [yaw]' (m, rad).", read_only=True)


class SimCellNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_cell")
        self.params = common.declare_params(self, Params)
        cell_config = load_cell_config(self.params.cell)
        if self.params.object:  # an unknown name: the node exits with the known ones listed
            cell_config = with_object(cell_config, self.params.object)
        if self.params.robot_profile and cell_config.robot_profile != self.params.robot_profile:
            # the other nodes of the graph (safety monitor, teleop, ...) would check and command another robot
            raise ValueError(f"cell '{self.params.cell}' carries robot profile '{cell_config.robot_profile}', but "
                             f"this graph runs '{self.params.robot_profile}': launch with cell:=<a cell of that "
                             f"robot> and robot_profile:=<its profile> together")
        self.cell = SimCell(cell_config, with_camera=self.params.camera_enabled)
        d = self.cell.description
        object_start = object_start_pose(self.params.object_start, d)  # ValueError: the node exits with the reason
        if object_start is not None:
            self.cell.place_object(object_start)
        self.rejections = ReasonCounter()
        self.physics_rate = common.RateMeter(window_s=2.0)
        self.overruns = 0

        self._joint_names = list(self.cell.joints)  # built once, not per /joint_states message
        self.joint_state_pub = self.create_publisher(JointState, "joint_states", common.STATE_QOS)
        self.object_gt_pub = self.create_publisher(PoseStamped, common.SIM_OBJECT_GT_TOPIC, common.STATE_QOS)
        # /clock as rclpy's time source subscribes to it (best effort, latest only)
        self.clock_pub = (self.create_publisher(Clock, "/clock", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)) if self.params.publish_clock else None)
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        description_pub = self.create_publisher(String, "robot_description", common.LATCHED_QOS)
        description_pub.publish(String(data=d.urdf_xml))
        self.create_subscription(JointTrajectory, d.profile.arm.command.topic, self._on_arm, common.COMMAND_QOS)
        self.create_subscription(Float64MultiArray, d.profile.hand.command.topic, self._on_hand, common.COMMAND_QOS)
        self.tf = TfPublisher(self, d) if self.params.publish_tf else None
        if self.tf is not None and self.cell.calibration is not None:
            cal = self.cell.calibration
            self.tf.publish_static(cal.parent_frame, cal.frame_id, cal.T_parent_camera)

        self._stop = threading.Event()
        self.context.on_shutdown(self._stop.set)  # stop publishing threads before the context goes away
        self._physics_thread = threading.Thread(target=self._physics_loop, name="physics", daemon=True)
        self._physics_thread.start()
        self.camera = None
        if self.cell.calibration is not None:
            self.camera = SimCameraStream(
                self, self.cell, "scene", CAMERA_NS, intrinsics=self.cell.camera.intrinsics,
                frame_id=self.cell.camera.frame_id, rate_hz=lambda: self.params.camera_rate_hz,
                now_s=self._camera_clock_s, stamp_of=self._sim_stamp, stop=self._stop,
                render_process=self.params.camera_render_process, render_nice=self.params.camera_render_nice,
                thread_name="camera")
        self.operator = OperatorSide(self, self.cell, self.params.operator_camera_rate_hz, self._stop,
                                     camera_clock_s=self._camera_clock_s, stamp_of=self._sim_stamp,
                                     render_process=self.params.camera_render_process,
                                     render_nice=self.params.camera_render_nice)
        common.live_rate_timer(self, "diagnostics_rate_hz", self.params.diagnostics_rate_hz,
                               self._publish_diagnostics)
        self.get_logger().info(
            f"sim cell '{self.cell.cell.name}' up: {len(d.joints)} joints, "
            f"physics {1.0 / self.cell.timestep_s:.0f} Hz, "
            f"arm <- {d.profile.arm.command.topic}, hand <- {d.profile.hand.command.topic}")

    # ------------------------------------------------------------------ commands
    def _reject(self, what: str, exc: CommandError) -> None:
        self.rejections.add(f"{what}: {exc}")
        self.get_logger().warning(f"rejected {what} command, holding: {exc}", throttle_duration_sec=1.0)

    def _on_arm(self, msg: JointTrajectory) -> None:
        try:
            self.cell.command_arm_trajectory(
                msg.joint_names,
                [p.positions for p in msg.points],
                [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points],
            )
        except CommandError as exc:
            self._reject("arm", exc)

    def _on_hand(self, msg: Float64MultiArray) -> None:
        try:
            self.cell.command_hand_positions(msg.data)
        except CommandError as exc:
            self._reject("hand", exc)

    # ------------------------------------------------------------------ physics
    def _physics_loop(self) -> None:
        """Step physics in real time; publish joint states and ground truth every publish period."""
        common.name_native_thread("physics")
        try:
            self._run_physics()
        except Exception:  # a publish racing shutdown is fine; anything else is a bug worth a traceback
            if rclpy.ok(context=self.context):
                raise

    def _run_physics(self) -> None:
        dt = self.cell.timestep_s
        start = time.monotonic()
        sim_start = self.cell.time_s
        next_publish = start
        rtf = self.params.real_time_factor
        while not self._stop.is_set():
            if self.params.real_time_factor != rtf:  # re-anchor the pace where it changes
                rtf, start, sim_start = self.params.real_time_factor, time.monotonic(), self.cell.time_s
            now = time.monotonic()
            behind_steps = int((rtf * (now - start) - (self.cell.time_s - sim_start)) / dt)
            if behind_steps > 0:
                steps = min(behind_steps, int(0.05 / dt))  # never catch up more than 50 ms at once
                if steps < behind_steps:
                    self.overruns += 1
                    start += (behind_steps - steps) * dt / rtf  # drop the backlog: run slower than real time
                self.cell.step(steps)
                for _ in range(steps):
                    self.physics_rate.tick(now)
            if now >= next_publish:
                self._publish_state()
                next_publish += 1.0 / self.params.joint_states_rate_hz
                if next_publish < now:
                    next_publish = now + 1.0 / self.params.joint_states_rate_hz
            sleep_s = min(next_publish, now + dt / rtf) - time.monotonic()
            if sleep_s > 0:
                time.sleep(sleep_s)

    def _sim_stamp(self, sim_time_s: float) -> Time:
        """Stamp of a physics state: its simulated time under use_sim_time (the /clock time), else now."""
        if self.get_clock().ros_time_is_active:
            return common.stamp_from_ns(int(round(sim_time_s * 1e9)))
        return self.get_clock().now().to_msg()

    def _publish_state(self) -> None:
        state = self.cell.joint_state()
        # /clock and the ground truth are built only for a listener (both volatile: a later reader gets the next
        # one anyway); in real time nobody reads /clock, and the 250 Hz publishes are CPU in the physics thread.
        if self.clock_pub is not None and self.clock_pub.get_subscription_count() > 0:
            self.clock_pub.publish(Clock(clock=common.stamp_from_ns(int(round(state.time_s * 1e9)))))
        stamp = self._sim_stamp(state.time_s)
        if not self.params.publish_joint_states:
            return
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = self._joint_names
        msg.position = state.position_rad.tolist()
        msg.velocity = state.velocity_rad_s.tolist()
        msg.effort = state.effort_nm.tolist()
        self.joint_state_pub.publish(msg)
        if self.tf is not None:
            self.tf.publish_robot(state.position_rad, stamp)
        if self.object_gt_pub.get_subscription_count() == 0:
            return
        xyz, quat = transform_to_pose(self.cell.object_pose())
        gt = PoseStamped()
        gt.header.stamp = stamp
        gt.header.frame_id = self.cell.description.base_frame
        gt.pose.position.x, gt.pose.position.y, gt.pose.position.z = map(float, xyz)
        o = gt.pose.orientation
        o.x, o.y, o.z, o.w = map(float, quat)
        self.object_gt_pub.publish(gt)

    # ------------------------------------------------------------------ camera
    def _camera_clock_s(self) -> float:
        """The clock camera frames are paced by: simulated time under use_sim_time, else the wall clock."""
        return self.cell.time_s if self.get_clock().ros_time_is_active else time.monotonic()

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        physics_hz = self.physics_rate.rate_hz()
        nominal_hz = self.params.real_time_factor / self.cell.timestep_s  # the pace asked for
        rejected = self.rejections.counts()
        level = Level.OK if physics_hz >= 0.9 * nominal_hz else Level.WARN
        message = "running" if level == Level.OK else f"physics at {physics_hz:.0f} Hz, below {nominal_hz:.0f} Hz"
        if rejected:
            message += f"; {sum(rejected.values())} commands rejected, last: {self.rejections.last_reason}"
        if self.camera is not None and self.camera.failure:
            level, message = Level.ERROR, f"{message}; camera stopped: {self.camera.failure}"
        values = {
            "physics_hz": f"{physics_hz:.1f}",
            "physics_nominal_hz": f"{nominal_hz:.1f}",
            "sim_time_s": f"{self.cell.time_s:.3f}",
            "overruns": str(self.overruns),
            **(self.camera.diagnostics() if self.camera is not None else {}),
            "rejected_total": str(sum(rejected.values())),
            **{f"rejected[{reason}]": str(n) for reason, n in rejected.items()},
            **self.operator.diagnostics(),
        }
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("sim_cell", level, message, values)]))

    def close(self) -> None:
        self._stop.set()
        self._physics_thread.join(timeout=1.0)
        if self.camera is not None:
            self.camera.close()
        self.operator.close()


def main(args: list[str] | None = None) -> None:
    common.run_node(SimCellNode, args)


if __name__ == "__main__":
    main()
