"""BackgroundSpin (tools that spin a node on a thread while the main thread works): close() stops and joins the
thread before destroying anything, so the process exits with the code the tool chose. A daemon thread left inside
rclpy's C++ wait at interpreter exit aborts the process (SIGABRT, "terminate called without an active exception"):
that is how `dexstack-calibrate` once exited -6 instead of 2 in CI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# A tool that receives messages on a spun node (so the thread is busy in rclpy), then fails with its own exit code.
TOOL = textwrap.dedent("""
    import sys, time
    import rclpy
    from std_msgs.msg import String
    from dexstack.nodes.common import BackgroundSpin, COMMAND_QOS

    rclpy.init()
    node = rclpy.create_node("spin_probe")
    got = []
    node.create_subscription(String, "spin_probe_topic", lambda m: got.append(m.data), COMMAND_QOS)
    pub = node.create_publisher(String, "spin_probe_topic", COMMAND_QOS)
    spin = BackgroundSpin(node, name="probe")
    end = time.monotonic() + 10.0
    while len(got) < 5 and time.monotonic() < end:
        pub.publish(String(data="x"))
        time.sleep(0.02)
    spin.close()
    assert not spin.thread.is_alive(), "spin thread still running after close()"
    assert not rclpy.ok(), "close() leaves the context shut down"
    print(f"received {len(got)}")
    sys.exit(2 if len(got) >= 5 else 1)
""")


def test_a_tool_with_a_spun_node_exits_with_its_own_code_every_time():
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    for attempt in range(5):  # the abort was intermittent: exit several times in a row
        proc = subprocess.run([sys.executable, "-c", TOOL], capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 2, (attempt, proc.returncode, proc.stdout, proc.stderr[-2000:])
        assert "terminate called" not in proc.stderr


def test_a_spin_whose_executor_was_shut_down_stops_instead_of_spinning_the_cpu(rclpy_context):
    """Shutting the executor down directly (not through close()) ends the thread like rclpy's own spin loop: a
    shut-down executor's spin_once returns at once, and a loop that missed it held the GIL for the rest of the test
    session (a 7 s test took 10 minutes after it)."""
    import time

    from rclpy.node import Node

    from dexstack.nodes.common import BackgroundSpin

    node = Node("spin_shutdown_probe")
    spin = BackgroundSpin(node)
    spin.executor.shutdown()
    end = time.monotonic() + 5.0
    while spin.thread.is_alive() and time.monotonic() < end:
        time.sleep(0.01)
    assert not spin.thread.is_alive()
    spin.close(shutdown_rclpy=False)
