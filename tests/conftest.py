"""Test harness. Network rule first: localhost-only DDS is forced here, before anything imports rclpy."""

import os

from dexstack.rosenv import force_localhost_dds

force_localhost_dds()
os.environ.setdefault("MUJOCO_GL", "egl")
# Isolate concurrent test runs on one machine (e.g. a developer's run beside CI): one DDS domain per session.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

from tests.ros_harness import rclpy_context, ros_node, sim_cell_graph  # noqa: E402,F401  (fixtures)
