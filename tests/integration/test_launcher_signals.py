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


# A node whose timer callback runs Python for a while, and says whether Ctrl-C raised inside it.
BUSY_NODE = """
import sys, time
from rclpy.node import Node
from dexstack.nodes import common

class Busy(Node):
    def __init__(self):
        super().__init__("busy")
        self.create_timer(0.01, self.work)

    def work(self):
        print("working", flush=True)
        try:
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                sum(range(1000))
        except KeyboardInterrupt:
            print("interrupted inside a callback", flush=True)
            sys.exit(3)

common.run_node(Busy)
"""


def test_ctrl_c_stops_a_node_between_callbacks_never_inside_one(tmp_path):
    """Python's default SIGINT handler raises KeyboardInterrupt wherever the interpreter is: inside a callback (half
    an update applied) or inside rclpy's message conversion, where pybind11 reports it as "Unable to convert call
    argument '0'" and the node exits 1 (seen in CI). run_node leaves the stop to rclpy's context shutdown."""
    script = tmp_path / "busy.py"
    script.write_text(BUSY_NODE)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "working"
        proc.send_signal(signal.SIGINT)  # lands in the middle of the 1.5 s callback
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "interrupted inside a callback" not in out
    assert proc.returncode == 0, err


# A node whose timer callback never returns: Ctrl-C shuts its context down, but spin_once never comes back to see it.
HANGING_NODE = """
import time
from rclpy.node import Node
from dexstack.nodes import common

class Stuck(Node):
    def __init__(self):
        super().__init__("stuck")
        self.create_timer(0.01, self.wedged_callback)

    def wedged_callback(self):
        print("in the callback", flush=True)
        while True:
            time.sleep(0.05)

common.run_node(Stuck)
"""


def test_a_node_that_does_not_stop_logs_its_stacks_before_it_is_killed(tmp_path):
    from dexstack.launch.runner import LaunchedGraph, RunningNode
    from dexstack.launch.xml import LaunchDescription

    graph = LaunchedGraph(LaunchDescription(path=tmp_path / "none.launch.xml", args={}, env={}, nodes=[]))
    log_path = tmp_path / "stuck.log"
    with open(log_path, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", HANGING_NODE], env=graph.env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    graph.nodes.append(RunningNode("stuck", process, log_path))
    try:
        assert wait_for(lambda: "in the callback" in log_path.read_text(), 30.0), log_path.read_text()
        codes = graph.stop(timeout_s=1.0)
    finally:
        if process.poll() is None:
            process.kill()
    assert codes == {"stuck": -signal.SIGKILL}
    log = log_path.read_text()
    assert "in wedged_callback" in log and "Current thread" in log, log  # faulthandler names the stuck function
