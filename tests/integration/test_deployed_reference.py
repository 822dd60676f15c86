"""Start and end of a reference on the deployed graph (sim_cell, safety_monitor, policy as separate processes,
as launch/sim_policy.launch.xml starts them): the launch argument places the cube, the tracking policy anchors its
reference to where the cube is, and after the reference ends it keeps sending its last targets (holds).

Kept short: the first 2 s of the lift reference (the approach), the camera off and the policy fed the simulator's
object pose by a remap (perception is exercised by bench/deployed_policy.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from trajectory_msgs.msg import JointTrajectory

from dexstack.evaluation.deployed import DeployedOptions, graph_description
from dexstack.launch.runner import LaunchedGraph
from dexstack.nodes import common
from dexstack.nodes.episode_probe import EpisodeProbe
from dexstack.policies import load_reference, reference_path, save_reference
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.robot import load_description
from tests.ros_harness import dump_logs, wait_for

D = load_description("panda_allegro")
PLACED_XY = (0.525, -0.02)  # 3.2 cm from the lift reference's start (0.5, 0.0)


@pytest.fixture
def short_reference(tmp_path) -> tuple[ReferenceTrajectory, str]:
    lift = load_reference(reference_path("lift"), D)
    k = int(np.searchsorted(lift.times_s, 2.0)) + 1
    ref = ReferenceTrajectory(lift.times_s[:k], lift.q_rad[:k], lift.object_pose[:k], "lift_start", "lift",
                              "panda_allegro")
    path = save_reference(ref, D.joints, tmp_path / "lift_start.npz")
    return ref, str(path)


def test_cube_placed_reference_anchored_and_held_after_its_end(rclpy_context, short_reference, tmp_path):

    ref, path = short_reference
    options = DeployedOptions(gt_object_pose=True, launch_args={"object_start": f"{PLACED_XY[0]} {PLACED_XY[1]} 0.025"})
    description = graph_description("track_cube", path, options)
    description.nodes = [n for n in description.nodes if n.executable != "object_pose"]
    for node in description.nodes:
        if node.executable == "sim_cell":
            node.params["camera_enabled"] = "false"
    probe = EpisodeProbe("test_deployed_probe")
    commands: list[tuple[float, np.ndarray]] = []
    probe.create_subscription(JointTrajectory, "/dexstack/arm/command",
                              lambda m: commands.append((time.monotonic(), np.array(m.points[0].positions))),
                              common.COMMAND_QOS)
    spin = common.BackgroundSpin(probe)
    graph = LaunchedGraph(description, log_dir=tmp_path / "logs").start()
    try:
        assert wait_for(lambda: len(commands) > 0, 60.0), f"no policy command\n{dump_logs(graph)}"
        started = time.monotonic()
        assert wait_for(lambda: time.monotonic() - started > ref.duration_s + 1.5, ref.duration_s + 5.0)
        policy_diag = dict(probe.diagnostics.get("policy", {}))
        record = probe.snapshot()
        assert not graph.failed(), dump_logs(graph)
    finally:
        codes = graph.stop()
        spin.close(shutdown_rclpy=False)
    assert all(c == 0 for c in codes.values()), f"nodes did not exit cleanly: {codes}\n{dump_logs(graph)}"
    # placed: the cube rests where the launch argument put it
    np.testing.assert_allclose(record.gt_pose[-1][:3], [*PLACED_XY, 0.025], atol=3e-3)
    # anchored: the policy shifted its reference by the cube's offset from the reference's start
    shift = [float(v) for v in policy_diag["policy_anchor_shift_m"].split()]
    np.testing.assert_allclose(shift[:2], np.array(PLACED_XY) - ref.object_pose[0, :2], atol=3e-3)
    # held: after the reference's end (+ one period of slack) every arm command is the same target
    end = commands[0][0] + ref.duration_s + 0.1
    after = [q for t, q in commands if t > end]
    before = [q for t, q in commands if t < end - 0.5]
    assert len(after) >= 10, f"{len(after)} commands after the end"
    assert np.ptp(np.array(after), axis=0).max() == 0.0
    assert np.ptp(np.array(before), axis=0).max() > 0.05  # it was moving before (the approach)
    assert policy_diag["policy_phase"] == "holding the reference's end"
