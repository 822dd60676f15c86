"""Test harness. Network rule first: localhost-only DDS is forced here, before anything imports rclpy."""

import os

from dexstack.rosenv import force_localhost_dds

force_localhost_dds()
os.environ.setdefault("MUJOCO_GL", "egl")
# Isolate concurrent test runs on one machine (e.g. a developer's run beside CI): one DDS domain per session.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

from tests.ros_harness import rclpy_context, ros_node, sim_cell_graph  # noqa: E402,F401  (fixtures)


def pytest_sessionfinish(session, exitstatus):
    """librealsense and Fast DDS in one process corrupt the heap at exit: the run ends rc 139 after every test
    passed. scripts/test.sh keeps tests/camera in a pytest process of its own; a test elsewhere that loads
    pyrealsense2 beside rclpy (e.g. a module-level ``from dexstack.camera import RealSenseSource``) fails the run
    here, with the reason, instead of crashing it."""
    import sys

    if "pyrealsense2" in sys.modules and "rclpy" in sys.modules:
        print("\nERROR: pyrealsense2 and rclpy were both loaded in this test process (heap corruption at exit): "
              "load librealsense only in tests/camera or in a subprocess", file=sys.stderr)
        session.exitstatus = 1
