"""dexstack-grasp-target --topics in its own process beside sim_cell (tabletop_grasp cell, separate process, DDS):
the frame arrives over the camera topics and goes through the hand and object cores; with the human hand out of
view the CLI refuses with the cause and exit code 2; with no camera on the domain it says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.ros_harness import dump_logs, start_graph


@pytest.fixture(scope="module")
def grasp_cell(rclpy_context, tmp_path_factory):
    graph = start_graph("sim_cell", {"cell": "tabletop_grasp"}, tmp_path_factory.mktemp("grasp_cell_logs"))
    yield graph
    codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"nodes did not exit cleanly: {codes}\n{dump_logs(graph)}"


def _cli(*args: str, domain: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if domain is not None:
        env["ROS_DOMAIN_ID"] = domain
    return subprocess.run([sys.executable, "-m", "dexstack.cli.grasp_target", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_frame_from_the_topics_without_a_hand_is_refused(grasp_cell):
    result = _cli("--object", "can", "--topics", "--timeout-s", "30")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no hand in the frame" in result.stderr
    assert result.stdout.strip() == ""  # no target printed


def test_no_camera_on_the_domain_is_reported(grasp_cell):
    other = str((int(os.environ.get("ROS_DOMAIN_ID", "0")) + 50) % 101)
    result = _cli("--object", "can", "--topics", "--timeout-s", "2", domain=other)
    assert result.returncode == 2 and "no RGB-D frame on" in result.stderr
