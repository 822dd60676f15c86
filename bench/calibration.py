"""Benchmark of the hand-eye calibration on the simulated cell with a bumped camera.

Runs the user's path: launch/sim_calibrate.launch.xml (sim_cell with config/cells/tabletop_bumped_camera.yaml +
safety_monitor, separate processes) and dexstack-calibrate's run against it (arm moved only through the safety
monitor), writing to a temporary file. Then compares with the cell's true camera pose and measures the effect
downstream: object_pose (fiducial method, the perception core) on rendered frames of the cube at ``--placements``
poses, median translation error vs ground truth with the stale calibration file and with the new one.

    flock /tmp/dexstack-cpu.lock .venv/bin/python bench/calibration.py --samples 16

Prints one JSON line: trans_err_mm, rot_err_deg, reproj_px_rms, samples, seconds, bootstrap_trans_mm_std,
object_err_mm_before, object_err_mm_after (+ object_err_mm_true_camera: the calibrated level, with the true pose,
and the stale file's own error, for reference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # before rclpy loads
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

CELL = "tabletop_bumped_camera"


def object_errors(T_base_camera_estimates: list[np.ndarray], placements: int) -> list[float]:
    """Median object translation error (mm) for each camera estimate, on the same rendered frames."""
    import mujoco

    from dexstack.calibration.camera import load_camera_calibration
    from dexstack.perception.geometry import pose_error
    from dexstack.perception.object_pose import ObjectPoseConfig, ObjectPoseEstimator
    from dexstack.perception.objects import load_object_model
    from dexstack.sim import SimCell
    from dexstack.sim.camera import SimCamera
    from dexstack.sim.scene import OBJECT_JOINT
    from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix

    cell = SimCell(CELL)
    camera = SimCamera(cell)
    adr = cell.model.joint(OBJECT_JOINT).qposadr[0]
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(placements):  # the cube resting on the table at random places and yaws
        xyz = [rng.uniform(0.4, 0.7), rng.uniform(-0.2, 0.2), 0.025]
        x, y, z, w = matrix_to_quat_xyzw(rpy_to_matrix([0.0, 0.0, rng.uniform(-np.pi, np.pi)]))
        cell.data.qpos[adr:adr + 7] = [*xyz, w, x, y, z]
        mujoco.mj_forward(cell.model, cell.data)
        frames.append((camera.render(), cell.object_pose()))
    camera.close()
    model = load_object_model("cube")
    cal = load_camera_calibration(cell.cell.calibration)
    out = []
    for T in T_base_camera_estimates:
        errors = []
        for k, (image, T_true) in enumerate(frames):
            est = ObjectPoseEstimator(model, T, ObjectPoseConfig(method="fiducial"), cal.depth_scale_m)
            result = est.estimate(image.color_rgb8, image.depth_mm, cell.camera.intrinsics, t_s=k / 15.0)
            if result.tracking:
                errors.append(pose_error(result.T_base_object, T_true)[0])
        out.append(float(np.median(errors)) if errors else float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--placements", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from rich.console import Console

    from dexstack.calibration import load_camera_calibration
    from dexstack.calibration.handeye import pose_difference
    from dexstack.cli.calibrate import parse_args, run
    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.sim import SimCell

    truth = SimCell(CELL).camera.T_parent_camera
    stale = load_camera_calibration("sim_tabletop").T_parent_camera
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "camera.yaml"
        with LaunchedGraph(parse_launch_file("sim_calibrate", {"cell": CELL}), log_dir=Path(tmp)):
            cli = parse_args(["--calibration", "sim_tabletop", "--output", str(out), "--samples", str(args.samples),
                              "--seed", str(args.seed), "--wait-s", "60"])
            record = run(cli, Console(stderr=True, quiet=True))
        new = load_camera_calibration(str(out)).T_parent_camera
    trans_mm, rot_deg = pose_difference(new, truth)
    stale_mm, stale_deg = pose_difference(stale, truth)
    before, after, calibrated = object_errors([stale, new, truth], args.placements)
    print(json.dumps({
        "trans_err_mm": round(trans_mm, 3), "rot_err_deg": round(rot_deg, 4),
        "reproj_px_rms": round(record["reproj_px_rms"], 3), "samples": record["samples"],
        "seconds": round(record["seconds"], 1), "bootstrap_trans_mm_std": round(record["bootstrap_trans_mm_std"], 3),
        "object_err_mm_before": round(before, 2), "object_err_mm_after": round(after, 2),
        "object_err_mm_true_camera": round(calibrated, 2),
        "stale_file_err_mm": round(stale_mm, 1), "stale_file_err_deg": round(stale_deg, 2),
        "views": record["views"], "method": record["method"],
    }))


if __name__ == "__main__":
    main()
