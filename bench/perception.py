"""Benchmark of the perception core on the simulated cell (in-process, 640x480 RGB-D from SimCamera, no ROS).

Prints one JSON line:
- ``hand_ms``: HandPipeline.process per frame (MediaPipe Hands full model + lifting + filter) on the cell's frames.
  The sim has no person in view, so this is palm detection on every frame (MediaPipe runs the landmark model only
  once a palm is found, adding its cost per hand).
- ``object_ms``: ObjectPoseEstimator.estimate per frame, ``model`` method (ICP), tracking a moving cube.
- ``object_err_mm_median``, ``object_err_deg_median``: that method's error against the sim's ground truth.
- ``object_fiducial_ms``, ``object_fiducial_err_mm_median``, ``object_fiducial_err_deg_median``: the same for the
  ``fiducial`` method (AprilTags + depth refinement), every frame independent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # the network rule, although nothing here loads rclpy
os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="object poses (and hand frames) to time")
    args = parser.parse_args()

    import mujoco
    import numpy as np

    from dexstack.perception.geometry import pose_error
    from dexstack.perception.hand import HandPipeline
    from dexstack.perception.hand_detectors import make_hand_detector
    from dexstack.perception.object_pose import ObjectPoseConfig, ObjectPoseEstimator
    from dexstack.perception.objects import load_object_model
    from dexstack.sim import SimCell
    from dexstack.sim.camera import SimCamera
    from dexstack.sim.scene import OBJECT_JOINT
    from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix

    cell = SimCell()
    camera = SimCamera(cell)
    cal = cell.calibration
    pinhole = cal.intrinsics
    adr = cell.model.joint(OBJECT_JOINT).qposadr[0]

    # A cube moving through the camera's view: 5 mm and a few degrees per frame, tumbling above the table.
    frames = []
    for k in range(args.frames):
        s = k / max(args.frames - 1, 1)
        xyz = [0.45 + 0.3 * s, 0.12 * np.sin(2 * np.pi * s), 0.06 + 0.05 * np.sin(np.pi * s)]
        x, y, z, w = matrix_to_quat_xyzw(rpy_to_matrix([1.2 * s, 0.6 * np.sin(2 * np.pi * s), 2.0 * s]))
        cell.data.qpos[adr:adr + 7] = [*xyz, w, x, y, z]
        mujoco.mj_forward(cell.model, cell.data)
        frames.append((camera.render(), cell.object_pose()))
    camera.close()

    model = load_object_model("cube")
    results = {}
    for method in ("model", "fiducial"):
        estimator = ObjectPoseEstimator(model, cal.T_parent_camera, ObjectPoseConfig(method=method),
                                        cal.depth_scale_m)
        times, errors, lost = [], [], 0
        for k, (image, T_true) in enumerate(frames):
            t0 = time.perf_counter()
            result = estimator.estimate(image.color_rgb8, image.depth_mm, pinhole, t_s=k / 15.0)
            times.append(1000 * (time.perf_counter() - t0))
            if result.tracking:
                errors.append(pose_error(result.T_base_object, T_true))
            else:
                lost += 1
        errors = np.array(errors) if errors else np.full((1, 2), np.nan)
        results[method] = (float(np.median(times)), *np.median(errors, axis=0), lost)

    detector = make_hand_detector("mediapipe", max_num_hands=2, model_complexity=1)
    pipeline = HandPipeline(detector, cal.T_parent_camera)
    hand_times = []
    for k, (image, _) in enumerate(frames):
        t0 = time.perf_counter()
        pipeline.process(image.color_rgb8, image.depth_mm, pinhole, t_s=k / 15.0)
        hand_times.append(1000 * (time.perf_counter() - t0))
    detector.close()

    m, f = results["model"], results["fiducial"]
    print(json.dumps({
        "hand_ms": round(float(np.median(hand_times[5:])), 2),
        "object_ms": round(m[0], 2),
        "object_err_mm_median": round(float(m[1]), 3),
        "object_err_deg_median": round(float(m[2]), 3),
        "object_lost_frames": m[3],
        "object_fiducial_ms": round(f[0], 2),
        "object_fiducial_err_mm_median": round(float(f[1]), 3),
        "object_fiducial_err_deg_median": round(float(f[2]), 3),
        "object_fiducial_lost_frames": f[3],
        "frames": len(frames),
        "image": f"{pinhole.width}x{pinhole.height}",
    }))


if __name__ == "__main__":
    main()
