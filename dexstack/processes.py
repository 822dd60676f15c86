"""Child processes that never outlive their parent: the parent-death signal, and stopping a whole process group.

Used by the launch runner (node processes), the Rerun web viewer and the tests' headless browser.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_DEATH_SIGNAL = signal.SIGTERM  # rclpy shuts a node down cleanly on it (SIGKILL would skip the cleanup)
STACK_DUMP_SIGNAL = signal.SIGUSR1  # a dexstack node writes its threads' Python stacks to stderr on it


def die_with_parent_preexec():
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux), or None where prctl is not
    available. The signal follows the *thread* that forked: a child forked from a thread that ends gets it then."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody will signal us
            os.kill(os.getpid(), PARENT_DEATH_SIGNAL)

    return preexec


def stop_process_group(process: subprocess.Popen, wait_s: float = 5.0) -> None:
    """Stop a child started with ``start_new_session=True`` and everything in its group: SIGTERM, then SIGKILL after
    ``wait_s``; once the leader is gone its group members get ``wait_s`` to go too (e.g. a browser's renderers
    still writing into its profile folder)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
