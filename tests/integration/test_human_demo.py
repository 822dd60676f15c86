"""A scripted human demo recorded through the real nodes (launch/sim_human_demo: sim cell with the rendered human
hand, hand_pose and object_pose on the scene camera, recorder as separate processes over DDS) and converted by
dexstack-demo2ref: the episode holds the perceived hand and object, and the reference's motion onset is where the
simulator's (ground-truth) object started moving."""

import json
import time

import numpy as np
import pytest

from dexstack.demos.episode import read_demo
from tests.ros_harness import dump_logs, start_graph, wait_for

pytest.importorskip("mediapipe")


def test_a_recorded_human_demo_becomes_a_reference(rclpy_context, tmp_path, capsys):
    out = tmp_path / "recordings"
    graph = start_graph("sim_human_demo", {"demo": "push", "seed": "1", "pace": "1.0", "output_dir": str(out)},
                        tmp_path / "logs")
    try:
        sim_hand = next(n for n in graph.nodes if n.name == "sim_hand")
        assert wait_for(lambda: "demo done" in sim_hand.log_path.read_text(), 90.0, 0.2), dump_logs(graph)
    finally:
        codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(graph)}"
    episodes = sorted(out.glob("episode_*"))
    assert len(episodes) == 1
    tracks = read_demo(episodes[0])
    assert tracks.object_fresh.sum() >= 5 and len(tracks.hand_t_s) >= 1, (len(tracks.object_t_s), len(tracks.hand_t_s))
    assert "push" in tracks.info["task"]

    from dexstack.cli.demo2ref import main as demo2ref

    capsys.readouterr()
    start = time.monotonic()
    code = demo2ref([str(episodes[0]), "-o", str(tmp_path / "refs"), "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and line["ok"], line
    assert time.monotonic() - start < 20.0
    from dexstack.policies.reference import load_reference
    from dexstack.robot import load_description

    ref = load_reference(line["reference"], load_description("panda_allegro"))
    assert ref.metadata["episode"] == str(episodes[0]) and ref.kind == "push"
    # the onset found in the perceived poses vs where the ground-truth object started moving (evaluation topic)
    moved = np.linalg.norm(tracks.gt_pose[:, :2] - tracks.gt_pose[0, :2], axis=1) > 0.003
    gt_onset_s = float(tracks.gt_t_s[np.argmax(moved)])
    assert abs(ref.metadata["onset_s"] - gt_onset_s) < 0.6, (ref.metadata["onset_s"], gt_onset_s)
    # the reference slides the object as the demo did (within perception's error)
    assert abs(np.linalg.norm(ref.object_pose[-1, :2] - ref.object_pose[0, :2])
               - np.linalg.norm(tracks.gt_pose[-1, :2] - tracks.gt_pose[0, :2])) < 0.03
