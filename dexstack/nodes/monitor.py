"""GraphMonitor: a passive node that measures what the graph publishes (rates, latest state) for reports/tests."""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from dexstack.nodes import common

CAMERA_COLOR = "camera/camera/color/image_raw"
CAMERA_DEPTH = "camera/camera/aligned_depth_to_color/image_raw"
OBJECT_ESTIMATE = "dexstack/object_pose"
ARM_INPUT = "dexstack/arm/command"


class TopicStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first_s: float | None = None
        self.last_s: float | None = None

    def tick(self) -> None:
        now = time.monotonic()
        self.count += 1
        self.first_s = now if self.first_s is None else self.first_s
        self.last_s = now

    def rate_hz(self) -> float:
        if self.count < 2 or self.last_s == self.first_s:
            return 0.0
        return (self.count - 1) / (self.last_s - self.first_s)


class GraphMonitor(Node):
    def __init__(self, name: str = "dexstack_monitor") -> None:
        super().__init__(name)
        self.joint_states, self.color = TopicStats(), TopicStats()
        self.depth, self.object_gt = TopicStats(), TopicStats()
        self.object_estimate = TopicStats()
        self._gt: dict[int, np.ndarray] = {}  # stamp_ns -> xyz of recent ground-truth poses
        self.object_errors_mm: list[float] = []
        self.last_joint_state: JointState | None = None
        # Measured joint positions over time (receipt monotonic s, name -> rad) and planned arm trajectories sent to
        # the safety monitor (receipt time, points): what a verdict "did the robot do what was asked" needs.
        self.joint_history: list[tuple[float, dict[str, float]]] = []
        self.arm_plans: list[tuple[float, int]] = []
        self.create_subscription(JointTrajectory, ARM_INPUT, self._on_arm_input, common.COMMAND_QOS)
        self.last_color: np.ndarray | None = None
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.safety_history: list[tuple[float, dict[str, int]]] = []  # (monotonic s, interventions by reason)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, common.STATE_QOS)
        self.create_subscription(Image, CAMERA_COLOR, self._on_color, common.SENSOR_QOS)
        self.create_subscription(Image, CAMERA_DEPTH, lambda _m: self.depth.tick(), common.SENSOR_QOS)
        self.create_subscription(PoseStamped, common.SIM_OBJECT_GT_TOPIC, self._on_object_gt, common.STATE_QOS)
        self.create_subscription(PoseStamped, OBJECT_ESTIMATE, self._on_object_estimate, common.STATE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_joint_state(self, msg: JointState) -> None:
        self.joint_states.tick()
        self.last_joint_state = msg
        self.joint_history.append((time.monotonic(), dict(zip(msg.name, msg.position))))

    def _on_arm_input(self, msg: JointTrajectory) -> None:
        if len(msg.points) > 1:
            self.arm_plans.append((time.monotonic(), len(msg.points)))

    def joint_positions(self, joints: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(times_s (N,), q_rad (N, len(joints))) of the recorded joint states that name every joint."""
        rows = [(t, [named[j] for j in joints]) for t, named in self.joint_history if all(j in named for j in joints)]
        if not rows:
            return np.zeros(0), np.zeros((0, len(joints)))
        return np.array([t for t, _ in rows]), np.array([q for _, q in rows])

    def _on_object_gt(self, msg: PoseStamped) -> None:
        self.object_gt.tick()
        p = msg.pose.position
        self._gt[common.stamp_to_ns(msg.header.stamp)] = np.array([p.x, p.y, p.z])
        while len(self._gt) > 2000:
            self._gt.pop(next(iter(self._gt)))

    def _on_object_estimate(self, msg: PoseStamped) -> None:
        """Position error against the ground truth nearest in time (the estimate carries its image's stamp)."""
        self.object_estimate.tick()
        if not self._gt:
            return
        stamp = common.stamp_to_ns(msg.header.stamp)
        nearest = min(self._gt, key=lambda s: abs(s - stamp))
        if abs(nearest - stamp) < 20_000_000:
            p = msg.pose.position
            self.object_errors_mm.append(1000 * float(np.linalg.norm(np.array([p.x, p.y, p.z]) - self._gt[nearest])))

    def _on_color(self, msg: Image) -> None:
        self.color.tick()
        self.last_color = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
            if status.name == "safety_monitor":
                self.safety_history.append((time.monotonic(), {kv.key[6:-1]: int(kv.value) for kv in status.values
                                                               if kv.key.startswith("count[")}))

    def reset_counts(self) -> None:
        for stats in (self.joint_states, self.color, self.depth, self.object_gt, self.object_estimate):
            stats.reset()
        self.object_errors_mm.clear()
        self.joint_history.clear()
        self.safety_history.clear()

    def report(self) -> dict:
        report: dict = {"rates_hz": {
            "joint_states": self.joint_states.rate_hz(),
            "camera_color": self.color.rate_hz(),
            "camera_aligned_depth": self.depth.rate_hz(),
            "object_pose_gt": self.object_gt.rate_hz(),
            "object_pose_estimate": self.object_estimate.rate_hz(),
        }}
        if self.object_errors_mm:
            report["object_pose_error_mm_median"] = float(np.median(self.object_errors_mm))
        sim = self.diagnostics.get("sim_cell")
        if sim:
            report["physics_hz"] = float(sim.get("physics_hz", 0.0))
            report["render_ms"] = float(sim.get("render_ms", 0.0))
            report["commands_rejected"] = int(sim.get("rejected_total", 0))
        if self.last_joint_state is not None:
            report["joint_names"] = list(self.last_joint_state.name)
            report["final_joint_positions_rad"] = list(self.last_joint_state.position)
        return report
