"""Report figures and the camera clip from an episode, and the benches' --plot helper (no ROS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec
from dexstack.robot import load_description
from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix
from dexstack.viz.plots import EpisodeSeries, bench_plot, object_errors, report_plots
from tests.unit.test_record_core import REG, header
from tests.unit.test_record_export import T0, make_episode, msg

D = load_description("panda_allegro")
MS = 1_000_000
PNG = b"\x89PNG\r\n\x1a\n"
POSE = "geometry_msgs/msg/PoseStamped"


def pose(ns: int, xyz, R) -> bytes:
    x, y, z, w = matrix_to_quat_xyzw(R)
    p = msg("geometry_msgs/msg/Pose", position=msg("geometry_msgs/msg/Point", x=xyz[0], y=xyz[1], z=xyz[2]),
            orientation=msg("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w))
    return REG.encode(msg(POSE, header=header(ns), pose=p), POSE)


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    """The export tests' episode plus object poses: estimates 3 mm and 10 deg off the truth, at 20 Hz."""
    root = tmp_path_factory.mktemp("plots")
    path = make_episode(root, 1.0, "plots", True)
    s = RecordingSession(SessionConfig(root / "with_object"), REG)
    for topic in ("/dexstack/object_pose", "/dexstack/sim/object_pose_gt"):
        s.set_topic(TopicSpec(topic, POSE))
    s.start(task="object", robot_profile="panda_allegro")
    for k in range(20):
        ns = T0 + k * 50 * MS
        truth = np.array([0.5, 0.0, 0.1 + 0.01 * k])
        assert s.submit("/dexstack/sim/object_pose_gt", pose(ns, truth, np.eye(3)), ns)
        assert s.submit("/dexstack/object_pose", pose(ns, truth + [0.003, 0, 0], rpy_to_matrix((0, 0, np.radians(10)))),
                        ns + 20 * MS)
    ok, message, object_episode = s.stop()
    s.close()
    assert ok, message
    return path, Path(object_episode)


def test_object_error_against_ground_truth_matches_stamps(episode):
    _, object_episode = episode
    t, pos_mm, rot_deg = object_errors(EpisodeSeries(object_episode, D))
    assert len(t) == 20
    np.testing.assert_allclose(pos_mm, 3.0, atol=1e-6)
    np.testing.assert_allclose(rot_deg, 10.0, atol=1e-4)
    np.testing.assert_allclose(np.diff(t), 0.05, atol=1e-9)


def test_report_plots_and_clip(episode, tmp_path):
    import av

    path, object_episode = episode
    series = EpisodeSeries(path, D)
    assert len(series.commands["before"]) == 100 and len(series.commands["after"]) == 100  # arm + hand at 50 Hz
    assert len(series.measured) == 201
    out = report_plots(path, tmp_path, D, safety_history=[(0.0, {}), (0.5, {"workspace": 2})], video_fps=5.0)
    assert set(out) == {"plot_joints", "plot_rates", "plot_interventions", "camera_video"}  # no object poses here
    for name in ("plot_joints", "plot_rates", "plot_interventions"):
        assert Path(out[name]).read_bytes()[:8] == PNG
    with av.open(out["camera_video"]) as clip:
        frames = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]
    assert len(frames) == 6  # 11 frames recorded at 10 Hz, kept every 2nd for 5 fps
    assert frames[0].shape[2] == 3 and frames[0].std() > 1.0
    out = report_plots(object_episode, tmp_path / "obj", D)
    assert Path(out["plot_object_error"]).read_bytes()[:8] == PNG


def test_bench_plot_helper_and_a_bench_writing_it(tmp_path):
    png = bench_plot(tmp_path / "b.png", "bench", {"a_ms_p50": 0.1, "b_hz": 2000.0, "name": "x", "flag": True},
                     samples={"a": np.random.default_rng(0).exponential(0.1, 500)})
    assert png.read_bytes()[:8] == PNG
    out = tmp_path / "retarget.png"
    result = subprocess.run([sys.executable, "bench/retarget.py", "--no-peer", "--frames", "30", "--seeds", "1",
                             "--methods", "vector", "--plot", str(out)], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["ours_hz"] > 0
    assert out.read_bytes()[:8] == PNG
