"""The in-process perception feed (the object pose node's core on the sim cell's camera) as ``run_episode``'s
``perceive`` hook: measured poses near the truth, the last published pose held between frames, the simulator's
pose only before anything was published."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.evaluation.perception_feed import PerceptionFeed
from dexstack.perception.geometry import pose_error
from dexstack.policies import load_reference, reference_path
from dexstack.robot import load_description
from dexstack.transforms import pose_to_transform

CAMERA_HZ = 10.0
PERIOD_S = 0.02  # the control period the hook is called at (several calls per camera frame)


@pytest.fixture(scope="module")
def description():
    return load_description("panda_allegro")


@pytest.fixture(scope="module")
def feed(description):
    f = PerceptionFeed(description, camera_hz=CAMERA_HZ)
    yield f
    f.close()


def test_the_feed_measures_the_cube_in_view_and_holds_the_pose_between_frames(feed, description):
    ref = load_reference(reference_path("lift"), description)
    feed.reset()
    seen, truths = [], []
    times = np.arange(0.0, 1.0, PERIOD_S)  # robot leaving home, the cube at rest in view
    for now in times:
        q, obj = ref.q_at(now), ref.object_pose_at(now)
        dq = np.zeros_like(q)
        seen.append(feed(now, q, dq, obj))
        truths.append(obj)
    # one frame per camera period, from t = 0
    assert [round(f.t_s, 6) for f in feed.frames] == [round(k / CAMERA_HZ, 6) for k in range(len(feed.frames))]
    assert len(feed.frames) == int(np.floor(times[-1] * CAMERA_HZ + 1e-9)) + 1
    assert all(f.kind == "fresh" for f in feed.frames)
    sym = feed.object_model.symmetries()
    for f in feed.frames:  # each measurement against the simulator's pose of its frame
        mm, _ = pose_error(f.T_published, f.T_true, sym)
        assert mm < 5.0
        assert f.err_mm == pytest.approx(mm)
    # between frames the policy sees the pose published at the last frame, not the live truth
    frame_of_step = np.floor(times * CAMERA_HZ + 1e-9).astype(int)
    for k, pose in enumerate(seen):
        T_pub = feed.frames[frame_of_step[k]].T_published
        np.testing.assert_allclose(pose[:3], T_pub[:3, 3], atol=1e-12)
        mm, _ = pose_error(pose_to_transform(pose[:3], pose[3:]), pose_to_transform(truths[k][:3], truths[k][3:]),
                           sym)
        assert mm < 5.0
    s = feed.summary()
    assert s["frames"] == len(feed.frames)
    assert s["fresh_fraction"] == 1.0 and s["published_fraction"] == 1.0
    assert s["truth_fed_fraction"] == 0.0 and s["wrong_fresh_frames"] == 0
    assert s["fresh_err_mm"]["n"] == len(feed.frames) and s["fresh_err_mm"]["max"] < 5.0


def test_a_pose_moved_between_frames_is_not_seen_until_the_next_frame(feed, description):
    ref = load_reference(reference_path("lift"), description)
    feed.reset()
    q, obj = ref.q_at(0.0), ref.object_pose_at(0.0)
    first = feed(0.0, q, np.zeros_like(q), obj)
    moved = obj.copy()
    moved[1] += 0.01  # the cube slides 1 cm between two camera frames (within the tracker's reach)
    held = feed(0.5 / CAMERA_HZ, q, np.zeros_like(q), moved)
    np.testing.assert_array_equal(held, first)
    assert len(feed.frames) == 1
    after = feed(1.0 / CAMERA_HZ, q, np.zeros_like(q), moved)
    assert len(feed.frames) == 2
    assert feed.frames[-1].kind == "fresh"
    assert abs(after[1] - moved[1]) < 0.004 and abs(after[1] - first[1]) > 0.006


def test_before_anything_is_published_the_feed_falls_back_to_the_simulator(feed, description):
    ref = load_reference(reference_path("lift"), description)
    feed.reset()
    q = ref.q_at(0.0)
    away = np.array([3.0, 3.0, 0.025, 0.0, 0.0, 0.0, 1.0])  # far outside the camera's view
    pose = feed(0.0, q, np.zeros_like(q), away)
    assert feed.frames[0].kind == "lost" and feed.frames[0].T_published is None
    np.testing.assert_array_equal(pose, away)
    assert feed.summary()["truth_fed_fraction"] == 1.0
    assert feed.summary()["published_fraction"] == 0.0
