"""dexstack-calibrate on the sim graph (sim_calibrate: bumped camera + safety monitor, separate processes): the CLI
moves the arm through the safety monitor, recovers the true camera pose and replaces the file keeping a backup."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from dexstack.calibration import load_camera_calibration
from dexstack.calibration.handeye import pose_difference
from dexstack.paths import data_path
from dexstack.sim.config import load_cell_config
from dexstack.sim.scene import true_camera
from tests.ros_harness import dump_logs, start_graph


def test_calibrate_recovers_the_bumped_camera_through_the_safety_monitor(tmp_path):
    path = tmp_path / "camera.yaml"
    stale_bytes = data_path("calibration", "sim_tabletop", "camera.yaml").read_bytes()
    path.write_bytes(stale_bytes)
    stale = load_camera_calibration(str(path))
    truth = true_camera(load_cell_config("tabletop_bumped_camera"), stale).T_parent_camera
    assert pose_difference(stale.T_parent_camera, truth)[0] > 20.0  # the file really is stale

    graph = start_graph("sim_calibrate", None, tmp_path / "logs")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dexstack.cli.calibrate", "--calibration", str(path), "--samples", "6",
             "--min-samples", "6", "--extra-poses", "3", "--bootstrap", "3", "--speed-rad-s", "1.0",
             "--min-move-s", "0.6", "--settle-s", "0.2", "--wait-s", "60", "--json"],
            capture_output=True, text=True, timeout=150)
    finally:
        codes = graph.stop()
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{dump_logs(graph)}"
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    new = load_camera_calibration(str(path))
    trans_mm, rot_deg = pose_difference(new.T_parent_camera, truth)
    assert trans_mm < 3.0 and rot_deg < 0.3, (trans_mm, rot_deg, record)
    assert record["samples"] >= 6 and record["reproj_px_rms"] < 1.0
    backups = list(tmp_path.glob("camera.yaml.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == stale_bytes
    assert np.allclose(new.intrinsics.K, stale.intrinsics.K)  # intrinsics only reported unless asked
    assert all(c == 0 for c in codes.values()), codes
