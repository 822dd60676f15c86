"""One simulated RGB-D camera of ``sim_cell`` published under realsense-ros names (node plumbing only).

Shared by the scene camera and the operator camera. Each frame renders the physics state of one instant (the
frame's stamp); the rendering runs in a niced child process (:class:`dexstack.sim.render_process.RenderProcess`)
unless ``render_process`` is false (in a thread of the node: the GIL is shared with the physics loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from dexstack import image_codec
from dexstack.nodes import common
from dexstack.nodes.camera_info import camera_info_msg
from dexstack.sim.cell import SimCell


class SimCameraStream:
    """Publishes ``{namespace}/color/image_raw``, ``.../color/camera_info``,
    ``.../aligned_depth_to_color/image_raw`` and ``.../camera_info`` from a thread.

    ``camera``: "scene" or "operator"; ``intrinsics``/``frame_id``: what ``camera_info`` carries; ``rate_hz()``: the
    frame rate now (a live parameter); ``now_s()``: the clock frames are paced by (simulated time under
    ``use_sim_time``); ``stamp_of(sim_time_s)``: a frame's stamp from its state's simulated time.
    """

    def __init__(self, node: Node, cell: SimCell, camera: str, namespace: str, *, intrinsics, frame_id: str,
                 rate_hz: Callable[[], float], now_s: Callable[[], float], stamp_of: Callable[[float], Time],
                 stop: threading.Event, render_process: bool, render_nice: int, thread_name: str) -> None:
        self.node, self.cell, self.which = node, cell, camera
        self.intrinsics, self.frame_id = intrinsics, frame_id
        self._rate_hz, self._now_s, self._stamp_of, self._stop = rate_hz, now_s, stamp_of, stop
        self._render_process, self._render_nice, self._thread_name = render_process, render_nice, thread_name
        self.rate = common.RateMeter(window_s=3.0)
        self.render_ms = 0.0
        self.render_pid: int | None = None
        self.failure = ""  # why the camera stopped, if it did
        self.color_pub = node.create_publisher(Image, f"{namespace}/color/image_raw", common.SENSOR_QOS)
        self.color_info_pub = node.create_publisher(CameraInfo, f"{namespace}/color/camera_info", common.SENSOR_QOS)
        self.depth_pub = node.create_publisher(
            Image, f"{namespace}/aligned_depth_to_color/image_raw", common.SENSOR_QOS)
        self.depth_info_pub = node.create_publisher(
            CameraInfo, f"{namespace}/aligned_depth_to_color/camera_info", common.SENSOR_QOS)
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)
        self._thread.start()

    def _open_renderer(self):
        if self._render_process:
            from dexstack.sim.render_process import RenderProcess

            renderer = RenderProcess(self.cell.cell, camera=self.which, nice=self._render_nice)
            self.render_pid = renderer.pid
            return renderer
        from dexstack.sim.camera import SimCamera  # the GL context belongs to this thread

        return SimCamera(self.cell, camera=self.cell.camera if self.which == "scene" else self.cell.operator_camera)

    def _loop(self) -> None:
        common.name_native_thread(self._thread_name)
        from dexstack.sim.render_process import RenderProcessError

        try:
            self._run()
        except RenderProcessError as exc:  # e.g. no EGL display: the cell runs on without this camera, and says so
            if not self._stop.is_set():
                self.failure = str(exc)
                self.node.get_logger().error(f"the {self.which} camera stopped: {exc}")
        except Exception:  # a publish racing shutdown is fine; anything else is a bug worth a traceback
            if rclpy.ok(context=self.node.context):
                raise

    def _run(self) -> None:
        renderer = self._open_renderer()
        next_frame = self._now_s()
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                state = self.cell.copy_render_state()
                stamp = self._stamp_of(state[0])  # the time of the rendered physics state
                image = renderer.render(state)
                self.render_ms = 1000.0 * (time.monotonic() - t0)
                color = Image(**image_codec.encode(image.color_rgb8, "rgb8"))
                depth = Image(**image_codec.encode(image.depth_mm, "16UC1"))
                for img in (color, depth):
                    img.header.stamp = stamp
                    img.header.frame_id = self.frame_id
                info = camera_info_msg(self.intrinsics, stamp, self.frame_id)
                self.color_pub.publish(color)
                self.color_info_pub.publish(info)
                self.depth_pub.publish(depth)
                self.depth_info_pub.publish(info)
                self.rate.tick()
                next_frame = max(next_frame + 1.0 / self._rate_hz(), self._now_s())
                while not self._stop.is_set() and self._now_s() < next_frame:  # sim time: re-read as physics runs
                    self._stop.wait(max(0.001, next_frame - self._now_s()))
        finally:
            renderer.close()

    def diagnostics(self, prefix: str = "") -> dict[str, str]:
        """``{prefix}camera_hz`` and ``{prefix}render_ms`` (request to image, queueing in the child included)."""
        out = {f"{prefix}camera_hz": f"{self.rate.rate_hz():.2f}", f"{prefix}render_ms": f"{self.render_ms:.1f}"}
        if self.failure:
            out[f"{prefix}camera_error"] = self.failure
        return out

    def close(self) -> None:
        self._thread.join(timeout=5.0)
