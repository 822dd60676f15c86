"""scripted_motion: plays a keyframe motion (config/motions/) as arm trajectory + streamed hand commands.

It waits for ``/joint_states`` (the drivers are up) and for the safety monitor to report ready
(``wait_for_safety``), sends the whole arm motion as one ``JointTrajectory`` (as a JTC client would, its header
stamped so a refusal on ``/dexstack/safety/rejected`` is recognised) and streams hand targets. A refused plan is
not lost: the motion starts over once the monitor is ready again (at most ``max_restarts`` times). It publishes to
the command *inputs* of the stack; the launch file decides whether they go through the safety monitor or, on the
bare sim cell, straight to the drivers (then ``wait_for_safety:=false``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexstack.control.scripted import load_motion
from dexstack.nodes import common
from dexstack.nodes.safety_link import SafetyLink, rejection_values
from dexstack.robot.description import load_description


@dataclass
class Params:
    robot_profile: str = common.param("panda_allegro", "Robot profile (config/robots/<name>.yaml).", read_only=True)
    motion: str = common.param("demo", "Motion (config/motions/<name>.yaml or a path).", read_only=True)
    hand_rate_hz: float = common.param(50.0, "Rate of streamed hand commands.", min=1.0, max=500.0)
    repeat: bool = common.param(False, "Start over when the motion ends.")
    start_delay_s: float = common.param(0.0, "Wait this long after the first /joint_states before starting.",
                                        read_only=True, min=0.0, max=600.0)
    wait_for_safety: bool = common.param(True, "Start only once the safety monitor reports ready.", read_only=True)
    max_restarts: int = common.param(5, "Start over at most this often after the monitor refused the plan.",
                                     read_only=True, min=0, max=100)


def _duration(t_s: float) -> Duration:
    return Duration(sec=int(t_s), nanosec=int(round((t_s - int(t_s)) * 1e9)))


class ScriptedMotionNode(Node):
    def __init__(self) -> None:
        super().__init__("scripted_motion")
        self.params = common.declare_params(self, Params)
        self.description = load_description(self.params.robot_profile)
        self.motion = load_motion(self.params.motion, self.description)
        # relative names (the safety monitor's inputs): remap them the ROS 2 way
        self.arm_pub = self.create_publisher(JointTrajectory, "dexstack/arm/command", common.COMMAND_QOS)
        self.hand_pub = self.create_publisher(Float64MultiArray, "dexstack/hand/command", common.COMMAND_QOS)
        self.create_subscription(JointState, "joint_states", self._on_state, common.STATE_QOS)
        self.safety = SafetyLink(self, on_rejected=self._on_rejected) if self.params.wait_for_safety else None
        self.start_time: float | None = None
        self.first_state_time: float | None = None
        self.plan_stamp_ns: int | None = None
        self.restarts = 0
        common.live_rate_timer(self, "hand_rate_hz", self.params.hand_rate_hz, self._tick)
        self.get_logger().info(
            f"motion '{self.params.motion}' ({self.motion.duration_s:.1f} s) waits for /joint_states")

    def _on_state(self, _msg: JointState) -> None:
        if self.start_time is not None or self.arm_pub.get_subscription_count() == 0:
            return
        if self.safety is not None and not self.safety.ready:
            return
        now = time.monotonic()
        self.first_state_time = self.first_state_time or now
        if now - self.first_state_time >= self.params.start_delay_s:
            self._start()

    def _start(self) -> None:
        self.start_time = time.monotonic()
        traj = JointTrajectory()
        traj.header.stamp = self.get_clock().now().to_msg()
        traj.header.frame_id = self.get_name()
        self.plan_stamp_ns = common.stamp_to_ns(traj.header.stamp)
        traj.joint_names = list(self.description.arm_joints)
        for t, q in zip(self.motion.times_s[1:], self.motion.arm_rad[1:]):
            traj.points.append(JointTrajectoryPoint(positions=q.tolist(), time_from_start=_duration(float(t))))
        self.arm_pub.publish(traj)
        self.get_logger().info("motion started")

    def _on_rejected(self, msg: DiagnosticStatus) -> None:
        values = rejection_values(msg)
        if values.get("part") != "arm" or self.plan_stamp_ns is None:
            return
        if values.get("stamp_ns") != str(self.plan_stamp_ns) or values.get("frame_id") != self.get_name():
            return  # someone else's command
        self.plan_stamp_ns = None
        if self.restarts >= self.params.max_restarts:
            self.get_logger().error(f"the safety monitor refused the motion ({msg.message}); giving up after "
                                    f"{self.restarts} restarts")
            self.start_time = float("inf")  # stop streaming the hand; never start again
            return
        self.restarts += 1
        self.get_logger().warning(f"the safety monitor refused the motion ({msg.message}); starting over when it "
                                  f"is ready (restart {self.restarts}/{self.params.max_restarts})")
        self.start_time = self.first_state_time = None

    def _tick(self) -> None:
        if self.start_time is None or self.start_time == float("inf"):
            return
        t = time.monotonic() - self.start_time
        self.hand_pub.publish(Float64MultiArray(data=self.motion.hand_at(t).tolist()))
        if t > self.motion.duration_s and self.params.repeat:
            self._start()


def main(args: list[str] | None = None) -> None:
    common.run_node(ScriptedMotionNode, args)


if __name__ == "__main__":
    main()
