"""The terminal UI drives a real recorder node through its services: keys in a pseudo-terminal start an episode,
mark it a success and save it; the panel shows the recorder's state from /diagnostics."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from dexstack.record.episode import load_episode_info


def test_keys_start_mark_and_save_an_episode(tmp_path):
    out = tmp_path / "episodes"
    recorder = subprocess.Popen([sys.executable, "-m", "dexstack.nodes.recorder", "--ros-args",
                                 "-p", f"output_dir:={out}", "-p", "task:=from the keyboard"], env=os.environ,
                                stdout=open(tmp_path / "recorder.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    pid, fd = pty.fork()
    if pid == 0:  # the UI, in a terminal of its own
        os.execve(sys.executable, [sys.executable, "-m", "dexstack.cli.record", "ui"], dict(os.environ))
    screen = bytearray()

    def read_until(text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    screen.extend(os.read(fd, 65536))
                except OSError:
                    break
            if text.encode() in screen:
                return True
        return False

    try:
        assert read_until("IDLE", 30.0), screen.decode(errors="ignore")[-2000:]  # diagnostics from the node
        os.write(fd, b" ")
        assert read_until("RECORDING episode 0", 15.0), screen.decode(errors="ignore")[-2000:]
        os.write(fd, b"y")
        assert read_until("marked success", 15.0), screen.decode(errors="ignore")[-2000:]
        os.write(fd, b"\x1b[C")  # right arrow: save
        assert read_until("saved episode 0", 15.0), screen.decode(errors="ignore")[-2000:]
        os.write(fd, b"q")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        recorder.send_signal(signal.SIGINT)
        assert recorder.wait(timeout=15) == 0
    info = load_episode_info(out / "episode_000000")
    assert (info.task, info.success, info.status) == ("from the keyboard", True, "complete")
