"""What a command source needs from the safety monitor: is it ready, and was my command refused?

The safety monitor publishes ``/dexstack/safety/ready`` (std_msgs/Bool, transient local, on every change and as a
heartbeat) and answers ``/safety_monitor/ready`` (std_srvs/Trigger: success = ready, message = why not). Every
command it refuses is reported on ``/dexstack/safety/rejected`` (diagnostic_msgs/DiagnosticStatus: ``name`` the part,
``message`` the reason, values ``stamp_ns`` / ``frame_id`` copied from the refused trajectory's header, so the sender
recognises its own plan). A source that sends one-shot plans waits for ``ready`` and resends what was refused.
"""

from __future__ import annotations

from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import Bool

from dexstack.nodes import common

READY_TOPIC = "/dexstack/safety/ready"
REJECTED_TOPIC = "/dexstack/safety/rejected"
READY_HEARTBEAT_S = 0.5  # the monitor republishes its readiness this often
READY_STALE_S = 3.0  # no readiness message for this long (monitor gone or stalled): not ready


class SafetyLink:
    """Subscribes to the monitor's readiness and rejections on behalf of a command source node."""

    def __init__(self, node: Node, on_rejected: Callable[[DiagnosticStatus], None] | None = None,
                 stale_s: float = READY_STALE_S):
        self._node = node  # its clock: the simulation's with use_sim_time, like the monitor's heartbeat
        self._ready = False
        self._last_s = -float("inf")
        self.stale_s = stale_s
        self.on_rejected = on_rejected
        node.create_subscription(Bool, READY_TOPIC, self._on_ready, common.LATCHED_QOS)
        node.create_subscription(DiagnosticStatus, REJECTED_TOPIC, self._on_rejected, common.COMMAND_QOS)

    def _on_ready(self, msg: Bool) -> None:
        self._ready, self._last_s = bool(msg.data), common.control_time_s(self._node)

    def _on_rejected(self, msg: DiagnosticStatus) -> None:
        if self.on_rejected is not None:
            self.on_rejected(msg)

    @property
    def ready(self) -> bool:
        return self._ready and common.control_time_s(self._node) - self._last_s <= self.stale_s


def rejection_values(msg: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.values}
