"""dexstack-calibrate on the sim graph (sim_calibrate: bumped camera + safety monitor, separate processes): the CLI
moves the arm through the safety monitor, recovers the true camera pose and replaces the file keeping a backup; in
--manual mode with a robot nobody moves it refuses (degenerate motion) and leaves the file as it was."""

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
    cli = [sys.executable, "-m", "dexstack.cli.calibrate", "--calibration", str(path), "--min-samples", "5",
           "--bootstrap", "3", "--wait-s", "60"]
    try:
        proc = subprocess.run(
            cli + ["--samples", "5", "--extra-poses", "2", "--speed-rad-s", "1.2", "--min-move-s", "0.4",
                   "--settle-s", "0.1", "--json"], capture_output=True, text=True, timeout=150)
        written = path.read_bytes()
        # --manual with nobody moving the robot: seven key presses at one pose cannot determine anything.
        manual = subprocess.run(cli + ["--manual"], input="\n" * 7 + "s\n", capture_output=True, text=True,
                                timeout=90)
    finally:
        codes = graph.stop()
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{dump_logs(graph)}"
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    new = load_camera_calibration(str(path))
    trans_mm, rot_deg = pose_difference(new.T_parent_camera, truth)
    assert trans_mm < 3.0 and rot_deg < 0.3, (trans_mm, rot_deg, record)
    assert record["samples"] >= 5 and record["reproj_px_rms"] < 1.0
    backups = list(tmp_path.glob("camera.yaml.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == stale_bytes
    assert np.allclose(new.intrinsics.K, stale.intrinsics.K)  # intrinsics only reported unless asked
    assert manual.returncode == 2, manual.stdout + manual.stderr
    assert "degenerate motion" in manual.stdout and "left unchanged" in manual.stdout, manual.stdout
    assert path.read_bytes() == written and len(list(tmp_path.glob("camera.yaml.*.bak"))) == 1
    assert all(c == 0 for c in codes.values()), codes
