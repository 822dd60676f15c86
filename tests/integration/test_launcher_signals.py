"""dexstack-launch with real processes: SIGTERM and SIGHUP stop the graph like Ctrl-C, and the nodes die with the
launcher even when it is SIGKILLed (parent-death signal). After each signal no node of the graph is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ros_harness import wait_for

# Two light nodes (no simulator): enough to see that every node of the graph goes.
LAUNCH = """<launch>
  <set_env name="ROS_AUTOMATIC_DISCOVERY_RANGE" value="LOCALHOST"/>
  <node pkg="dexstack" exec="scripted_motion" name="motion_a">
    <param name="wait_for_safety" value="false"/>
  </node>
  <node pkg="dexstack" exec="scripted_motion" name="motion_b">
    <param name="wait_for_safety" value="false"/>
  </node>
</launch>
"""


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count: it runs no code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def node_started(pid: int) -> bool:
    try:
        return b"dexstack.nodes.scripted_motion" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_no_node_outlives_the_launcher(tmp_path, signum):
    launch_file = tmp_path / "two.launch.xml"
    launch_file.write_text(LAUNCH)
    launcher = subprocess.Popen([sys.executable, "-m", "dexstack.launch.runner", str(launch_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    nodes: list[int] = []
    try:
        assert wait_for(lambda: sum(node_started(p) for p in children(launcher.pid)) == 2, 20.0), \
            f"nodes not started: {children(launcher.pid)}"
        nodes = children(launcher.pid)
        time.sleep(2.0)  # the nodes are past rclpy.init: a stop now exercises their shutdown, not their imports
        assert all(alive(p) for p in nodes)
        launcher.send_signal(signum)
        launcher.wait(timeout=15.0)
        assert wait_for(lambda: not any(alive(p) for p in nodes), 10.0), \
            f"{signum.name}: nodes left running: {[p for p in nodes if alive(p)]}"
        output = launcher.stdout.read()
        if signum != signal.SIGKILL:  # a clean stop: the launcher says so, and every node exited cleanly
            assert f"{signum.name}: stopping the graph" in output, output
            assert launcher.returncode == 0, output
    finally:
        for pid in nodes or children(launcher.pid):  # never leave our own processes behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
