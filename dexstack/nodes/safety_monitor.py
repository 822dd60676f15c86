"""safety_monitor: the single gate between every command source and the drivers.

Inputs: ``/dexstack/arm/command`` (JointTrajectory) and ``/dexstack/hand/command`` (Float64MultiArray) or
``/dexstack/hand/command_stamped`` (sensor_msgs/JointState: the same targets with the header stamp of what they were
computed from; names empty or the profile's hand joints in any order) from the active command source,
``/joint_states``, e-stop on ``/dexstack/estop`` (std_msgs/Bool, true = stop) and the ``~/estop`` / ``~/reset``
services (std_srvs/Trigger). Output: the driver topics named by the robot profile, at ``rate_hz``. It is the only
publisher of driver commands. Status and every intervention on ``/diagnostics``.

Latency tracing: the arm output keeps the header stamp of the last accepted arm input (teleop stamps it with the
camera frame's capture time). The hand driver's Float64MultiArray (ros2_control's forward command controller) has
no header, so every hand driver command is mirrored, right after it, on ``/dexstack/safety/hand_command_stamped``
(sensor_msgs/JointState: the same positions, hand joint names, header stamp of the last accepted hand input; zero
when that input was an unstamped Float64MultiArray). A driver command is traced back to the image it came from.

Readiness for command sources (``dexstack/nodes/safety_link.py``): ``/dexstack/safety/ready`` (std_msgs/Bool,
transient local, on change and every 0.5 s) and the ``~/ready`` service (Trigger: success = ready, message = why
not). Every refused command is reported to its sender on ``/dexstack/safety/rejected`` (DiagnosticStatus).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexstack.control.commands import CommandError
from dexstack.control.joint_state import JointStateCache
from dexstack.diagnostics import Level, StatusReport
from dexstack.nodes import common
from dexstack.nodes.safety_link import READY_HEARTBEAT_S, READY_TOPIC, REJECTED_TOPIC
from dexstack.robot.description import load_description
from dexstack.safety.gate import WORKSPACE_MODES, SafetyConfig, SafetyGate

ARM_INPUT = "dexstack/arm/command"
HAND_INPUT = "dexstack/hand/command"
HAND_INPUT_STAMPED = "dexstack/hand/command_stamped"
HAND_OUTPUT_STAMPED = "/dexstack/safety/hand_command_stamped"  # mirror of each hand driver command, with its stamp
ESTOP_TOPIC = "dexstack/estop"
_DEFAULTS = SafetyConfig()


@dataclass
class Params:
    robot_profile: str = common.param("panda_allegro", "Robot profile (limits and frames).", read_only=True)
    rate_hz: float = common.param(_DEFAULTS.rate_hz, "Output rate to the drivers.", read_only=True,
                                  min=10.0, max=1000.0)
    command_timeout_s: float = common.param(_DEFAULTS.command_timeout_s, "Input stream stale after this (s).",
                                            min=0.005, max=5.0)
    state_timeout_s: float = common.param(_DEFAULTS.state_timeout_s, "/joint_states stale after this (s).",
                                          min=0.01, max=5.0)
    position_margin_rad: float = common.param(_DEFAULTS.position_margin_rad, "Clamp margin inside joint limits.",
                                              min=0.0, max=0.5)
    velocity_scale: float = common.param(_DEFAULTS.velocity_scale, "Fraction of the description's velocity limits.",
                                         min=0.01, max=1.0)
    arm_max_acceleration_rad_s2: float = common.param(_DEFAULTS.arm_max_acceleration_rad_s2, "Arm acceleration limit.",
                                                      min=0.01, max=100.0)
    arm_max_jerk_rad_s3: float = common.param(_DEFAULTS.arm_max_jerk_rad_s3, "Arm jerk limit.", min=0.1, max=10000.0)
    hand_max_acceleration_rad_s2: float = common.param(_DEFAULTS.hand_max_acceleration_rad_s2,
                                                       "Hand acceleration limit.", min=0.01, max=1000.0)
    hand_max_jerk_rad_s3: float = common.param(_DEFAULTS.hand_max_jerk_rad_s3, "Hand jerk limit.", min=0.1,
                                               max=100000.0)
    max_tracking_error_rad: float = common.param(_DEFAULTS.max_tracking_error_rad,
                                                 "Restart from the measured state beyond this error.",
                                                 min=0.01, max=3.0)
    workspace_min_m: list = common.param(list(_DEFAULTS.workspace_min_m),
                                         "Workspace box minimum (x, y, z), base frame.")
    workspace_max_m: list = common.param(list(_DEFAULTS.workspace_max_m),
                                         "Workspace box maximum (x, y, z), base frame.")
    workspace_mode: str = common.param(_DEFAULTS.workspace_mode, "What happens at the workspace boundary.",
                                       choices=WORKSPACE_MODES)
    max_outside_limits_rad: float = common.param(_DEFAULTS.max_outside_limits_rad,
                                                 "Targets further outside the joint limits are refused, not clamped.",
                                                 min=0.001, max=3.0)
    arm_max_step_rad: float = common.param(_DEFAULTS.arm_max_step_rad,
                                           "Arm targets further from the measured state are refused.", min=0.01,
                                           max=7.0)
    hand_max_step_rad: float = common.param(_DEFAULTS.hand_max_step_rad,
                                            "Hand targets further from the measured state are refused.", min=0.01,
                                            max=7.0)
    table_top_z_m: float = common.param(_DEFAULTS.table_top_z_m, "Table surface height (base frame).", min=-2.0,
                                        max=2.0)
    table_penetration_m: float = common.param(_DEFAULTS.table_penetration_m,
                                              "How far below the table top a setpoint's links may go.", min=0.0,
                                              max=0.1)
    arm_link_radius_m: float = common.param(_DEFAULTS.arm_link_radius_m, "Arm capsule radius (collision checks).",
                                            min=0.001, max=0.3)
    finger_table_penetration_m: float = common.param(
        _DEFAULTS.finger_table_penetration_m, "How far below the table top a setpoint's finger links may go (a finger "
        "pressing on the table stops on it).", min=0.0, max=0.05)
    hand_link_radius_m: float = common.param(_DEFAULTS.hand_link_radius_m, "Hand capsule radius (collision checks).",
                                             min=0.001, max=0.1)
    diagnostics_rate_hz: float = common.param(1.0, "Rate of /diagnostics.", min=0.1, max=10.0)


def safety_config(p: Params) -> SafetyConfig:
    names = {f.name for f in dataclasses.fields(SafetyConfig)}
    values = {k: v for k, v in dataclasses.asdict(p).items() if k in names}
    values["workspace_min_m"] = tuple(values["workspace_min_m"])
    values["workspace_max_m"] = tuple(values["workspace_max_m"])
    return SafetyConfig(**values)


def _validate(p: Params) -> str | None:
    problems = safety_config(p).errors()
    return "; ".join(problems) if problems else None


class SafetyMonitorNode(Node):
    def __init__(self) -> None:
        super().__init__("safety_monitor")
        self.params = common.declare_params(self, Params, on_change=self._on_param, validate_all=_validate)
        self.description = load_description(self.params.robot_profile)
        self.gate = SafetyGate(self.description, safety_config(self.params))
        self.state = JointStateCache(self.description.joints)
        self.gate_ms: list[float] = []
        self._logged_s: dict[str, float] = {}  # last log time (perf_counter) per intervention reason
        self._arm_source_stamp = None  # header stamp of the last accepted arm input: kept on the output (tracing)
        self._hand_source_stamp = None  # same for the hand (None: the last accepted input had no stamp)
        self._arm_joint_names = list(self.description.arm_joints)  # built once, not per output message
        self._hand_joint_names = list(self.description.hand_joints)
        profile = self.description.profile
        self.arm_pub = self.create_publisher(JointTrajectory, profile.arm.command.topic, common.COMMAND_QOS)
        self.hand_pub = self.create_publisher(Float64MultiArray, profile.hand.command.topic, common.COMMAND_QOS)
        self.hand_stamp_pub = self.create_publisher(JointState, HAND_OUTPUT_STAMPED, common.COMMAND_QOS)
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        self.ready_pub = self.create_publisher(Bool, READY_TOPIC, common.LATCHED_QOS)
        self.rejected_pub = self.create_publisher(DiagnosticStatus, REJECTED_TOPIC, common.COMMAND_QOS)
        self._ready: bool | None = None
        self._ready_sent_s = -float("inf")
        self.create_subscription(JointState, "joint_states", self._on_state, common.STATE_QOS)
        self.create_subscription(JointTrajectory, ARM_INPUT, self._on_arm, common.COMMAND_QOS)
        self.create_subscription(Float64MultiArray, HAND_INPUT, self._on_hand, common.COMMAND_QOS)
        self.create_subscription(JointState, HAND_INPUT_STAMPED, self._on_hand_stamped, common.COMMAND_QOS)
        self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop_topic, common.COMMAND_QOS)
        self.create_service(Trigger, "~/estop", self._on_estop_service)
        self.create_service(Trigger, "~/reset", self._on_reset_service)
        self.create_service(Trigger, "~/ready", self._on_ready_service)
        self._period_s = 1.0 / self.params.rate_hz
        self.create_timer(self._period_s, self._tick)
        common.live_rate_timer(self, "diagnostics_rate_hz", self.params.diagnostics_rate_hz,
                               self._publish_diagnostics)
        self.get_logger().info(f"gating {ARM_INPUT} -> {profile.arm.command.topic}, "
                               f"{HAND_INPUT} -> {profile.hand.command.topic} at {self.params.rate_hz:.0f} Hz")

    def _on_param(self, _name: str, _value) -> None:
        self.gate.reconfigure(safety_config(self.params))

    # ------------------------------------------------------------------ inputs
    def _on_state(self, msg: JointState) -> None:
        now = common.control_time_s(self)
        self.state.update(msg.name, msg.position, now)
        q = self.state.positions(now, self.params.state_timeout_s)
        if q is not None:
            self.gate.update_state(q, now)

    def _on_arm(self, msg: JointTrajectory) -> None:
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        try:
            self.gate.arm_command(msg.joint_names, [p.positions for p in msg.points], times,
                                  common.control_time_s(self))
            self._arm_source_stamp = msg.header.stamp
        except CommandError as exc:
            self.get_logger().warning(f"arm command rejected, holding: {exc}", throttle_duration_sec=1.0)
            self._report_rejected("arm", str(exc), len(msg.points), common.stamp_to_ns(msg.header.stamp),
                                  msg.header.frame_id)

    def _on_hand(self, msg: Float64MultiArray) -> None:
        self._hand_input(msg.data, None)

    def _on_hand_stamped(self, msg: JointState) -> None:
        values = list(msg.position)
        hand_joints = list(self.description.hand_joints)
        if msg.name:
            if sorted(msg.name) != sorted(hand_joints) or len(msg.position) != len(msg.name):
                self._hand_rejected(f"hand command names {list(msg.name)[:3]}... (with {len(msg.position)} "
                                    f"positions) are not the hand joints {hand_joints[:3]}...", msg.header)
                return
            by_name = dict(zip(msg.name, msg.position))
            values = [by_name[n] for n in hand_joints]
        self._hand_input(values, msg.header)

    def _hand_input(self, values, header) -> None:
        try:
            self.gate.hand_command(values, common.control_time_s(self))
            self._hand_source_stamp = header.stamp if header is not None else None
        except CommandError as exc:
            self._hand_rejected(str(exc), header)

    def _hand_rejected(self, reason: str, header) -> None:
        self.get_logger().warning(f"hand command rejected, holding: {reason}", throttle_duration_sec=1.0)
        self._report_rejected("hand", reason, 1, common.stamp_to_ns(header.stamp) if header is not None else 0,
                              header.frame_id if header is not None else "")

    def _report_rejected(self, part: str, reason: str, points: int, stamp_ns: int, frame_id: str) -> None:
        """Tell the sender (it recognises its plan by the header it stamped) instead of dropping it silently."""
        values = {"part": part, "points": str(points), "stamp_ns": str(stamp_ns), "frame_id": frame_id}
        self.rejected_pub.publish(DiagnosticStatus(
            level=DiagnosticStatus.ERROR, name=f"safety_monitor/{part}", message=reason, hardware_id=self.get_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()]))

    def _publish_ready(self, now: float) -> None:
        ready, _reason = self.gate.readiness(now)
        if ready != self._ready or now - self._ready_sent_s >= READY_HEARTBEAT_S:
            self._ready, self._ready_sent_s = ready, now
            self.ready_pub.publish(Bool(data=ready))

    def _on_ready_service(self, _request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.gate.readiness(common.control_time_s(self))
        return response

    # ------------------------------------------------------------------ e-stop
    def _estop(self, reason: str) -> None:
        already = self.gate.estopped
        self.gate.estop(reason)
        if not already:
            self._publish_hold()
            self.get_logger().error(f"E-STOP: {reason}; nothing passes until ~/reset")

    def _publish_hold(self) -> None:
        """Last command before the gate closes: hold the measured position."""
        q = self.state.positions(common.control_time_s(self), float("inf"))
        if q is None:
            return
        n_arm = len(self.description.arm_joints)
        self._send(q[:n_arm], q[n_arm:], time_from_start_s=0.0)

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self._estop(f"{ESTOP_TOPIC} = true")

    def _on_estop_service(self, _request, response: Trigger.Response) -> Trigger.Response:
        self._estop("~/estop service")
        response.success, response.message = True, "e-stop latched; holding; call ~/reset to release"
        return response

    def _on_reset_service(self, _request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.gate.reset(common.control_time_s(self))
        log = self.get_logger().info if response.success else self.get_logger().warn
        log(response.message)
        return response

    # ------------------------------------------------------------------ output
    def _send(self, arm_rad: np.ndarray | None, hand_rad: np.ndarray | None, time_from_start_s: float) -> None:
        if arm_rad is not None:
            point = JointTrajectoryPoint(positions=arm_rad.tolist())
            point.time_from_start.nanosec = int(time_from_start_s * 1e9)
            traj = JointTrajectory(joint_names=self._arm_joint_names, points=[point])
            if self._arm_source_stamp is not None:  # the input (e.g. the camera frame) this output comes from
                traj.header.stamp = self._arm_source_stamp
            self.arm_pub.publish(traj)
        if hand_rad is not None:
            values = hand_rad.tolist()
            self.hand_pub.publish(Float64MultiArray(data=values))
            # Built only for a listener (latency tracing): this topic is volatile, so a reader that joins later never
            # gets an old mirror anyway, and its 16 joint names per tick cost CPU in the 100 Hz loop.
            if self.hand_stamp_pub.get_subscription_count() > 0:
                mirror = JointState(name=self._hand_joint_names, position=values)
                if self._hand_source_stamp is not None:
                    mirror.header.stamp = self._hand_source_stamp
                self.hand_stamp_pub.publish(mirror)

    def _tick(self) -> None:
        t0 = time.perf_counter()
        now = common.control_time_s(self)
        out = self.gate.tick(now)
        # The driver interpolates to the setpoint over the time the filter advanced (one period, more after a late
        # tick), so the robot's velocity stays what the filter allowed.
        self._send(out.arm_rad, out.hand_rad, time_from_start_s=max(out.horizon_s, self._period_s))
        self.gate_ms.append(1000.0 * (time.perf_counter() - t0))
        for reason in out.interventions:  # throttled per reason: a chatty one must not hide the others
            last = self._logged_s.get(reason)
            if last is None or t0 - last >= 1.0:
                self._logged_s[reason] = t0
                self.get_logger().warning(f"intervention: {reason}")
        self._publish_ready(now)

    def _publish_diagnostics(self) -> None:
        now = common.control_time_s(self)
        counts = self.gate.interventions.counts()
        fresh = self.gate.state_fresh(now)
        if self.gate.estopped:
            level, message = Level.ERROR, f"E-STOP latched ({self.gate.estop_reason})"
        elif not fresh:
            missing = self.state.missing(now, self.params.state_timeout_s)
            level, message = Level.ERROR, f"/joint_states stale or incomplete (missing {missing[:4]}...)"
        elif counts:
            level, message = Level.WARN, f"last intervention: {self.gate.interventions.last_reason}"
        else:
            level, message = Level.OK, "passing commands"
        times = np.array(self.gate_ms[-1000:]) if self.gate_ms else np.zeros(1)
        values = {
            "estopped": str(self.gate.estopped),
            "state_fresh": str(fresh),
            "interventions_total": str(sum(counts.values())),
            "gate_ms_p50": f"{np.percentile(times, 50):.4f}",
            "gate_ms_p99": f"{np.percentile(times, 99):.4f}",
            "last_collision": "; ".join(self.gate.last_collisions) or "none",
            **{f"count[{reason}]": str(n) for reason, n in counts.items()},
        }
        self.gate_ms = self.gate_ms[-1000:]
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("safety_monitor", level, message, values)]))


def main(args: list[str] | None = None) -> None:
    common.run_node(SafetyMonitorNode, args)


if __name__ == "__main__":
    main()
