"""Simulated RGB-D camera: renders color and depth aligned to color from the cell's true camera.

Set ``MUJOCO_GL=egl`` before importing mujoco for headless rendering (the sim node does). A renderer owns a GL
context bound to the thread that created it: create and use :class:`SimCamera` in one thread.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass

import mujoco
import numpy as np

from dexstack.sim.cell import SimCell

DEPTH_MAX_MM = 65535

# Cameras still open at interpreter exit, closed by a hook registered after the first renderer exists, i.e. after
# mujoco's own atexit hook that terminates the EGL display (atexit runs in reverse order): a renderer finalised after
# that hook frees its GL context on a terminated display, which can crash the process at exit (a test run ended
# rc 139 after all its tests passed).
_OPEN: weakref.WeakSet[SimCamera] = weakref.WeakSet()
_exit_hook_registered = False


def _close_open_cameras() -> None:
    for camera in list(_OPEN):
        if camera._thread_id == threading.get_ident():  # a GL context is bound to its creating thread
            camera.close()


@dataclass(frozen=True)
class RGBDImage:
    time_s: float  # simulation time of the rendered state
    color_rgb8: np.ndarray  # (H, W, 3) uint8
    depth_mm: np.ndarray  # (H, W) uint16, aligned to color, 0 = no return


class SimCamera:
    def __init__(self, cell: SimCell, max_depth_m: float = 10.0, camera=None):
        """``camera``: which of the cell's cameras (a ``TrueCamera``; default: the scene camera, ``cell.camera``;
        ``cell.operator_camera`` for the operator's)."""
        camera = camera or cell.camera
        if camera is None:
            raise ValueError("this SimCell was built without a camera")
        self.cell = cell
        self.true_camera = camera
        self.intrinsics = camera.intrinsics
        self.max_depth_m = max_depth_m
        self._data = mujoco.MjData(cell.model)
        h, w = self.intrinsics.height, self.intrinsics.width
        self._renderer = mujoco.Renderer(cell.model, height=h, width=w)
        self._thread_id = threading.get_ident()
        global _exit_hook_registered
        if not _exit_hook_registered:
            atexit.register(_close_open_cameras)
            _exit_hook_registered = True
        _OPEN.add(self)
        self._camera = camera.name
        self._depth_scale_m = camera.depth_scale_m

    def render(self, state: tuple | None = None) -> RGBDImage:
        """Render ``state`` (a ``SimCell.copy_render_state()`` snapshot, e.g. taken in another process) or, by
        default, the cell's current state."""
        time_s, qpos, mocap_pos, mocap_quat = state if state is not None else self.cell.copy_render_state()
        self._data.qpos[:] = qpos
        self._data.mocap_pos[:] = mocap_pos
        self._data.mocap_quat[:] = mocap_quat
        mujoco.mj_kinematics(self.cell.model, self._data)
        mujoco.mj_camlight(self.cell.model, self._data)
        renderer = self._renderer
        renderer.update_scene(self._data, camera=self._camera)
        renderer.disable_depth_rendering()
        color = renderer.render().copy()
        renderer.enable_depth_rendering()
        depth_m = renderer.render()
        depth_mm = np.where(
            (depth_m > 0) & (depth_m < self.max_depth_m),
            np.minimum(np.rint(depth_m / self._depth_scale_m), DEPTH_MAX_MM),
            0,
        ).astype(np.uint16)
        return RGBDImage(time_s=time_s, color_rgb8=color, depth_mm=depth_mm)

    def keypoints(self) -> np.ndarray:
        """(21, 3) human hand keypoints of the last rendered state, base frame (exact ground truth of the image)."""
        if self.cell.human_hand is None:
            raise ValueError("this cell has no human hand")
        return self.cell.human_hand.keypoints(self._data)

    def close(self) -> None:
        """Free the GL context (idempotent); from the thread that created the camera."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        _OPEN.discard(self)
