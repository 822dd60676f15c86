"""A sim camera whose render process cannot start (no GL backend) is reported with the reason on the stream's
diagnostics (sim_cell turns it into an ERROR on /diagnostics); the node's thread does not die with a traceback."""

import threading
import time

import rclpy

from dexstack.nodes.sim_camera_stream import SimCameraStream
from dexstack.sim import SimCell
from tests.ros_harness import wait_for


def test_a_camera_that_cannot_render_is_reported_with_the_reason(rclpy_context, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")  # the render child inherits it and cannot open a GL context
    node = rclpy.create_node("sim_camera_stream_test")
    cell = SimCell("tabletop")
    stop = threading.Event()
    stream = SimCameraStream(node, cell, "scene", "test_camera", intrinsics=cell.camera.intrinsics,
                             frame_id=cell.camera.frame_id, rate_hz=lambda: 15.0, now_s=time.monotonic,
                             stamp_of=lambda _t: node.get_clock().now().to_msg(), stop=stop, render_process=True,
                             render_nice=0, thread_name="camera")
    try:
        assert wait_for(lambda: bool(stream.failure), 60.0), "no failure reported"
        assert "render process" in stream.failure
        diagnostics = stream.diagnostics()
        assert diagnostics["camera_error"] == stream.failure and diagnostics["camera_hz"] == "0.00"
    finally:
        stop.set()
        stream.close()
        node.destroy_node()
