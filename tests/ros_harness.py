"""Fixtures for tests with real ROS 2: an rclpy node spinning in this process, and nodes in real processes."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dexstack.rosenv import assert_localhost_dds


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, period_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return bool(predicate())


def call_service(node, srv_type, name: str, request, attempts: int = 4, timeout_s: float = 3.0):
    """``dexstack.nodes.common.call_service`` (retries lost responses), failing the test when nothing answers."""
    from dexstack.nodes.common import call_service as call

    response = call(node, srv_type, name, request, timeout_s=attempts * timeout_s, attempts=attempts)
    assert response is not None, f"no response from {name} after {attempts} attempts"
    return response


@pytest.fixture(scope="session")
def rclpy_context() -> Iterator[None]:
    assert_localhost_dds()
    import rclpy

    rclpy.init()
    yield
    rclpy.shutdown()
    remove_stale_shm_files()


def _shm_files_in_use() -> set[str]:
    """/dev/shm paths some live process has open or mapped (another test run or bench on this machine)."""
    used: set[str] = set()
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            for fd in os.listdir(f"{proc}/fd"):
                target = os.readlink(f"{proc}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    used.add(target)
            with open(f"{proc}/maps") as maps:
                used.update(line.split(None, 5)[5].strip() for line in maps if "/dev/shm/" in line)
        except (OSError, IndexError):
            continue
    return used


def remove_stale_shm_files() -> None:
    """Fast DDS leaves shared-memory files behind; remove ours that no live process uses (runs may overlap)."""
    paths = glob.glob("/dev/shm/fastdds_*") + glob.glob("/dev/shm/sem.fastdds_*")
    if not paths:
        return
    in_use = _shm_files_in_use()
    for path in paths:
        try:
            if path not in in_use and os.stat(path).st_uid == os.getuid() and time.time() - os.stat(path).st_mtime > 60:
                os.unlink(path)
        except OSError:
            pass


class Stream:
    """A subscription callback keeping every message with its arrival time: ``items`` = [(monotonic_s, msg)]."""

    def __init__(self):
        self.items = []

    def __call__(self, msg):
        self.items.append((time.monotonic(), msg))


class SpinningNode:
    """A node of the test process, spun by an executor in a background thread."""

    def __init__(self, name: str):
        from rclpy.node import Node

        from dexstack.nodes.common import BackgroundSpin

        self.node = Node(name)
        self._spin = BackgroundSpin(self.node, name=name)

    def close(self) -> None:
        self._spin.close(shutdown_rclpy=False)  # the rclpy_context fixture owns the context


@pytest.fixture
def ros_node(rclpy_context, request) -> Iterator:
    spinning = SpinningNode(f"test_{request.node.name}".replace("[", "_").replace("]", "_").replace("-", "_")[:60])
    yield spinning.node
    spinning.close()


def start_graph(launch_name: str, arguments: dict[str, str] | None, log_dir: Path):
    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file

    return LaunchedGraph(parse_launch_file(launch_name, arguments), log_dir=log_dir).start()


def dump_logs(graph) -> str:
    return "\n".join(f"--- {n.name} ---\n{n.log_path.read_text()[-3000:]}" for n in graph.nodes if n.log_path)


@pytest.fixture(scope="module")
def sim_cell_graph(rclpy_context, tmp_path_factory) -> Iterator:
    """The sim cell running in its own process for a whole test module."""
    graph = start_graph("sim_cell", None, tmp_path_factory.mktemp("sim_cell_logs"))
    yield graph
    codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"nodes did not exit cleanly: {codes}\n{dump_logs(graph)}"
