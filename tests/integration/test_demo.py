"""The main job end to end: dexstack-sim-demo brings up the graph, runs the motion, and writes its report."""

import json
import os
import subprocess
import sys
from pathlib import Path


def test_sim_demo_runs_the_scripted_motion_and_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dexstack.cli.demo", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=180, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = list(tmp_path.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["ok"]
    # Streams flow (their speed is bench/sim_rates.py's job: a loaded 2-core machine halves them); a slow stream is a
    # warning in the report, never a failed demo.
    assert report["rates_hz"]["joint_states"] > 0 and report["rates_hz"]["camera_color"] > 0
    assert report["rates_hz"]["object_pose_estimate"] > 0  # perception runs on the rendered camera
    assert report["object_pose_error_mm_median"] < 5.0
    assert report["physics_hz"] > 0
    assert isinstance(report["warnings"], list)
    assert report["final_tracking_error_rad_max"] < 0.05
    # The motion happened along the way, not only at the end (the demo ends at home, where it starts): every
    # keyframe reached at its time, and the arm really travelled (the demo moves panda_joint6 by 0.63 rad).
    assert report["arm_plans_sent"] >= 1
    assert len(report["keyframes"]) == 6 and all(k["ok"] for k in report["keyframes"]), report["keyframes"]
    assert report["arm_travel_rad_max"] > 0.5
    assert report["dds"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert all(n["exit_code"] == 0 for n in report["nodes"].values()), report["nodes"]
    assert (run_dir / "camera_color.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The motion was recorded as an episode and exported as a LeRobot dataset.
    episode = run_dir / "recordings" / "episode_000000"
    assert (episode / "metadata.yaml").is_file() and list(episode.glob("*.mcap"))
    info = json.loads((run_dir / "lerobot_dataset" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 1 and info["total_frames"] > 100
    # Figures of the report (dexstack/viz/plots.py) and a short clip of the sim camera.
    for name in ("plot_joints", "plot_rates", "plot_object_error", "plot_interventions"):
        assert Path(report["outputs"][name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    import av

    with av.open(report["outputs"]["camera_video"]) as clip:
        assert sum(1 for _ in clip.decode(video=0)) > 10
