"""Where the viewer's data goes: an ``.rrd`` file and/or Rerun's web viewer served on 127.0.0.1 only.

The Rerun SDK's own ``serve_grpc``/``serve_web_viewer`` bind every interface (0.0.0.0); the ``rerun`` CLI that ships
in the same wheel takes ``--bind``, so the web viewer runs as that CLI (``--serve-web``) in a child process bound to
loopback, and the recording streams to it over gRPC. The page and its WebAssembly come from the wheel: no internet.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import rerun as rr

from dexstack.processes import die_with_parent_preexec, stop_process_group
from dexstack.viz.scene import default_blueprint

LOOPBACK = "127.0.0.1"


class VizServerError(ValueError):
    """The web viewer could not be started (port taken, rerun CLI missing): a setup error, reported without a
    traceback by the node's entry point like a bad parameter."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def rerun_executable() -> str:
    """The ``rerun`` binary of this interpreter's rerun-sdk (``rerun_cli/rerun``; the ``rerun`` console script is a
    Python wrapper that would leave it orphaned when stopped), else the CLI next to python or on PATH."""
    try:
        import rerun_cli

        binary = Path(rerun_cli.__file__).parent / "rerun"
        if binary.is_file():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("rerun", path=str(Path(sys.executable).parent)) or shutil.which("rerun")
    if found is None:
        raise VizServerError("the 'rerun' CLI of rerun-sdk is not installed (pip install -r requirements/base.txt)")
    return found


_analytics_disabled = False


def disable_analytics() -> None:
    """Turn Rerun's usage analytics off (its config file) before any Rerun code runs: the network rule says no
    traffic leaves loopback, and the SDK and the viewer would otherwise try to send usage events."""
    global _analytics_disabled
    if _analytics_disabled:
        return
    try:
        subprocess.run([rerun_executable(), "analytics", "disable"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired, VizServerError):
        pass  # no CLI: nothing of Rerun's will run to send anything either
    _analytics_disabled = True


@dataclass
class WebViewer:
    """``rerun --serve-web`` bound to 127.0.0.1: gRPC proxy on ``grpc_port``, the web page on ``web_port``."""

    web_port: int = 0  # 0: a free port
    grpc_port: int = 0
    memory_limit: str = "1GiB"
    # a page opened late (or reloaded) is sent the latest data first: it shows the robot now at once instead of
    # replaying the buffered minutes first (on a loaded machine that replay fell minutes behind live)
    newest_first: bool = True
    process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"rerun+http://{LOOPBACK}:{self.grpc_port}/proxy"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}/?url={quote(self.grpc_url, safe='')}"

    def start(self, timeout_s: float = 20.0) -> WebViewer:
        disable_analytics()
        self.web_port = self.web_port or _free_port()
        self.grpc_port = self.grpc_port or _free_port()
        for port in (self.web_port, self.grpc_port):
            if _port_open(port):
                raise VizServerError(f"port {port} on {LOOPBACK} is already in use")
        cmd = [rerun_executable(), "--serve-web", "--bind", LOOPBACK, "--port", str(self.grpc_port),
               "--web-viewer-port", str(self.web_port), "--server-memory-limit", self.memory_limit]
        cmd += ["--newest-first"] if self.newest_first else []
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=die_with_parent_preexec())
        deadline = time.monotonic() + timeout_s
        while not (_port_open(self.web_port) and _port_open(self.grpc_port)):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")[-800:] if self.process.stderr else ""
                raise VizServerError(f"rerun --serve-web exited with {self.process.returncode}: {err}")
            if time.monotonic() > deadline:
                self.close()
                raise VizServerError(f"rerun --serve-web did not open ports {self.web_port}/{self.grpc_port}")
            time.sleep(0.1)
        return self

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process)  # its own session: the whole group (a wrapper's child too)
        self.process = None


def open_recording(name: str, save_path: str | Path | None = None, web: WebViewer | None = None,
                   live: bool = True) -> rr.RecordingStream:
    """A recording stream writing to ``save_path`` (.rrd) and/or streaming to a started :class:`WebViewer`;
    ``live``: the viewer follows the newest data (else it opens paused, e.g. a recorded episode)."""
    disable_analytics()
    rec = rr.RecordingStream("dexstack", recording_id=name)
    rec.set_log_time_enabled(False)  # one timeline, the messages' own (ros_time): no wall-clock log_time/log_tick
    rec.set_log_tick_enabled(False)
    sinks = []
    if web is not None:
        sinks.append(rr.GrpcSink(web.grpc_url))
    if save_path is not None:
        path = Path(save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sinks.append(rr.FileSink(str(path)))
    if not sinks:
        raise ValueError("open_recording needs a save_path or a web viewer")
    rec.set_sinks(*sinks, default_blueprint=default_blueprint(live))
    return rec
