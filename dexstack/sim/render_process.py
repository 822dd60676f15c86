"""A cell camera rendered in a child process, at a lower CPU priority than the physics that feeds it.

Why a process: MuJoCo's software (EGL/llvmpipe) rendering costs ~60 ms of CPU per 640x480 RGB-D frame on the
workstation's cores, about a core at 15 Hz. Rendered in a thread of the physics process it shares the GIL with the
physics loop and the node's publishers; in its own process, niced, the kernel gives the control path (physics,
safety gate, policy) the CPU first and the camera what is left, which is what a real cell looks like (the camera is
its own device; a slow frame is late, never a late joint state).

The parent sends a render state (``SimCell.copy_render_state()``: time, qpos, mocap pose) and receives an
:class:`~dexstack.sim.camera.RGBDImage` of exactly that state: the frame's stamp stays the state's time however
late the frame is. The child exits when its pipe closes (the parent exited or was killed).

    renderer = RenderProcess(cell.cell, camera="scene", nice=10)
    image = renderer.render(cell.copy_render_state())
    renderer.close()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection, Pipe

from dexstack.sim.config import CellConfig

CAMERAS = ("scene", "operator")


class RenderProcessError(RuntimeError):
    """The render process could not start or died; the message says why (its stderr is the parent's)."""


class RenderProcess:
    """Renders one camera of a cell (``"scene"``: ``SimCell.camera``, ``"operator"``: ``SimCell.operator_camera``)
    in a child process. Not thread-safe: one thread renders. ``nice``: added to the child's niceness (0-19)."""

    def __init__(self, cell: CellConfig, camera: str = "scene", nice: int = 10, start_timeout_s: float = 120.0):
        if camera not in CAMERAS:
            raise ValueError(f"camera '{camera}' is not one of {CAMERAS}")
        if not 0 <= nice <= 19:
            raise ValueError(f"nice {nice} is outside 0..19")
        self._conn, child = Pipe()
        env = dict(os.environ)
        env.setdefault("MUJOCO_GL", "egl")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dexstack.sim.render_process", str(child.fileno())],
            pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL)
        child.close()
        self._conn.send((cell, camera, nice))
        reply = self._receive(start_timeout_s, "start")
        if reply[0] != "ready":
            self.close()
            raise RenderProcessError(f"the render process could not open the {camera} camera: {reply[1]}")
        self.intrinsics = reply[1]
        self.pid = self._proc.pid

    def _receive(self, timeout_s: float | None, what: str):
        try:
            if timeout_s is not None and not self._conn.poll(timeout_s):
                self.close()
                raise RenderProcessError(f"the render process did not {what} within {timeout_s:.0f} s")
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._proc.wait(timeout=5.0)
            raise RenderProcessError(f"the render process exited (code {code}) before it could {what}; its "
                                     f"reason is in the log above") from exc

    def render(self, state: tuple):
        """The :class:`~dexstack.sim.camera.RGBDImage` of ``state`` = ``SimCell.copy_render_state()``."""
        try:
            self._conn.send(state)
        except (BrokenPipeError, OSError) as exc:
            raise RenderProcessError(f"the render process is gone (code {self._proc.poll()})") from exc
        reply = self._receive(None, "render")
        if isinstance(reply, tuple):  # ("error", reason)
            raise RenderProcessError(f"rendering failed: {reply[1]}")
        return reply

    def close(self) -> None:
        """Stop the child (idempotent): it exits when its pipe closes."""
        if not self._conn.closed:
            self._conn.close()
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _serve(conn: Connection) -> None:
    cell_config, which, nice = conn.recv()
    os.nice(nice)
    try:
        from dexstack.sim.camera import SimCamera
        from dexstack.sim.cell import SimCell

        cell = SimCell(cell_config, with_camera=True)
        true_camera = cell.camera if which == "scene" else cell.operator_camera
        if true_camera is None:
            raise ValueError(f"cell '{cell.cell.name}' has no {which} camera")
        camera = SimCamera(cell, camera=true_camera)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it with the reason
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", camera.intrinsics))
    try:
        while True:
            try:
                state = conn.recv()
            except EOFError:
                return
            try:
                image = camera.render(state)
            except Exception as exc:  # noqa: BLE001
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
                continue
            conn.send(image)
    finally:
        camera.close()


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the child leaves when its parent closes the pipe, never on its own
    # (a frame request would otherwise meet a dead child while the parent is still shutting down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve(Connection(int(sys.argv[1])))
    except BrokenPipeError:
        pass
