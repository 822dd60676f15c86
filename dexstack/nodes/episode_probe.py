"""EpisodeProbe: a passive node that records one deployed episode for scoring (evaluation only, never on the
control path). It listens to the simulator's ground-truth object pose, the policy's arm commands, the perceived
object pose (and its staleness flag) and the sim cell's diagnostics, and fills a
:class:`~dexstack.evaluation.scoring.EpisodeRecord`. Times come from the node's clock, so with ``use_sim_time`` the
record is on the simulation's timeline."""

from __future__ import annotations

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.node import Node
from trajectory_msgs.msg import JointTrajectory

from dexstack.evaluation.scoring import EpisodeRecord
from dexstack.nodes import common
from dexstack.perception.pose_keeper import STALE_POSITION_STD_M

OBJECT_GT = "/dexstack/sim/object_pose_gt"
ARM_COMMAND = "/dexstack/arm/command"
OBJECT_POSE = "/dexstack/object_pose"
OBJECT_POSE_COV = "/dexstack/object_pose_with_covariance"


class EpisodeProbe(Node):
    def __init__(self, name: str = "episode_probe", arm_command_topic: str = ARM_COMMAND, context=None) -> None:
        super().__init__(name, context=context)
        self._lock = threading.Lock()
        self.record = EpisodeRecord(reference="")
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostic_messages: dict[str, str] = {}
        self.create_subscription(PoseStamped, OBJECT_GT, self._on_gt, common.STATE_QOS)
        self.create_subscription(JointTrajectory, arm_command_topic, self._on_command, common.COMMAND_QOS)
        self.create_subscription(PoseWithCovarianceStamped, OBJECT_POSE_COV, self._on_pose, common.STATE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def start(self, reference: str) -> None:
        with self._lock:
            self.record = EpisodeRecord(reference=reference)
            self.diagnostics.clear()

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_gt(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        with self._lock:
            self.record.gt_t_s.append(common.stamp_to_ns(msg.header.stamp) * 1e-9)
            self.record.gt_pose.append(np.array([p.x, p.y, p.z, o.x, o.y, o.z, o.w]))

    def _on_command(self, _msg: JointTrajectory) -> None:
        with self._lock:
            self.record.command_t_s.append(self.now_s())
            self.record.command_wall_s.append(time.monotonic())

    def _on_pose(self, msg: PoseWithCovarianceStamped) -> None:
        c = msg.pose.covariance  # a kept (predicted) pose is at least STALE_POSITION_STD_M uncertain
        fresh = max(float(c[0]), float(c[7]), float(c[14])) < STALE_POSITION_STD_M ** 2
        with self._lock:
            self.record.pose_t_s.append(self.now_s())
            self.record.pose_fresh.append(fresh)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = values
            self.diagnostic_messages[status.name] = status.message
            if status.name == "sim_cell" and "sim_time_s" in values:
                with self._lock:
                    self.record.physics_time_s.append(float(values["sim_time_s"]))
                    self.record.physics_wall_s.append(time.monotonic())

    def snapshot(self) -> EpisodeRecord:
        with self._lock:
            r = self.record
            return EpisodeRecord(r.reference, list(r.gt_t_s), list(r.gt_pose), list(r.command_t_s),
                                 list(r.command_wall_s), list(r.pose_t_s), list(r.pose_fresh),
                                 list(r.physics_time_s), list(r.physics_wall_s), list(r.notes))
