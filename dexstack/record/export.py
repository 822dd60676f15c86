"""Export recorded episodes to a LeRobot dataset (format v3.0). No ROS imports.

``python -m dexstack.record.export <episodes_dir> <out_dir> [--fps 30]`` writes::

    out_dir/meta/info.json                      codebase_version "v3.0", fps, features (dtype/shape/names)
    out_dir/meta/stats.json                     min/max/mean/std/count (+ quantiles) per feature
    out_dir/meta/tasks.parquet                  task text -> task_index (pandas index "task")
    out_dir/meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, file offsets, stats
    out_dir/data/chunk-000/file-000.parquet     one row per frame: observation.state, action, timestamp, indices
    out_dir/videos/observation.images.<cam>/chunk-000/file-000.mp4   every episode's frames, back to back

Frames are on a fixed ``fps`` grid resampled by the messages' own header stamps (not by arrival time: a loop that
ran late does not shift the data). Frame k of an episode is at ``t0 + k/fps`` where ``t0`` is the first instant
with a joint state and an image of every camera. ``observation.state`` = joint positions from ``/joint_states``
interpolated linearly at that instant, in the robot description's joint order (``load_description(profile)``).
``action`` = the safety-gated driver commands (``/arm_controller/joint_trajectory``: the last point's positions;
``/hand_controller/commands``) held from the latest one at or before the instant; before a part's first command
its action is the measured position (hold). Camera frames are the latest image stamped at or before the instant.
Depth (16UC1, mm) is exported as a gray video scaled linearly from 0 to ``depth_max_mm`` (info: ``is_depth_map``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from dexstack.record.episode import (
    METADATA_FILE,
    STATUS_RECORDING,
    EpisodeInfo,
    EpisodeStore,
    load_episode_info,
)
from dexstack.record.images import COMPRESSED_TYPE, IMAGE_TYPE, decode_image, depth_mm, to_rgb8
from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry, header_stamp_ns

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 500
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_CAMERAS = {
    "color": "/camera/camera/color/image_raw",
    "depth": "/camera/camera/aligned_depth_to_color/image_raw",
}
_CODEC_NAMES = {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "h264": "h264", "libx265": "hevc",
                "mpeg4": "mpeg4"}
_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


class ExportError(ValueError):
    """An episode cannot be exported (no joint states, missing camera, ...) or the output folder exists."""


@dataclass
class ExportConfig:
    fps: int = 30  # frames per second of the dataset (LeRobot wants an integer)
    cameras: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CAMERAS))  # key -> Image topic
    state_topic: str = "/joint_states"
    arm_action_topic: str = "/arm_controller/joint_trajectory"
    hand_action_topic: str = "/hand_controller/commands"
    robot_profile: str = ""  # "" = the profile stored with each episode
    vcodec: str = "libsvtav1"  # LeRobot's default; "libx264" encodes faster
    pix_fmt: str = "yuv420p"
    crf: int = 30
    gop: int = 2  # keyframe every 2 frames: cheap random access, as LeRobot encodes
    depth_max_mm: int = 2000  # depth -> 8-bit gray scale
    only_success: bool = False  # skip episodes marked failed (unmarked ones are kept)
    default_task: str = "demonstration"


@dataclass
class EpisodeFrames:
    """One episode resampled on the fps grid."""

    source: Path
    info: EpisodeInfo
    t0_ns: int
    state: np.ndarray  # (N, n_joints) float32, rad
    action: np.ndarray  # (N, n_joints) float32, rad
    image_refs: dict[str, np.ndarray]  # camera key -> (N,) index into that camera's messages (stamp order)
    image_topics: dict[str, tuple[str, str]]  # camera key -> (topic as stored, type)
    image_order: dict[str, np.ndarray]  # camera key -> file-order position of each stamp-sorted message

    @property
    def length(self) -> int:
        return len(self.state)


@dataclass
class ExportReport:
    out_dir: Path
    episodes: list[Path]
    skipped: dict[str, str]  # episode dir -> reason
    total_frames: int
    fps: int


# ---------------------------------------------------------------------- reading one episode
def _mcap_path(episode_dir: Path) -> Path:
    mcaps = sorted(Path(episode_dir).glob("*.mcap"))
    if not mcaps:
        raise ExportError(f"{episode_dir}: no .mcap file")
    return mcaps[0]


def _stamp(data: bytes, publish_time: int, log_time: int, has_header: bool) -> int:
    if has_header:
        s = header_stamp_ns(data)
        if s:
            return s
    return publish_time or log_time


def _hold(stamps: np.ndarray, values: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order hold: (value at or before each t, mask of t with a value)."""
    if len(stamps) == 0:
        return np.zeros((len(t), values.shape[1] if values.ndim == 2 else 0)), np.zeros(len(t), dtype=bool)
    idx = np.searchsorted(stamps, t, side="right") - 1
    ok = idx >= 0
    return values[np.clip(idx, 0, None)], ok


def read_episode(episode_dir: Path, config: ExportConfig, registry: TypeRegistry, description) -> EpisodeFrames:
    """First pass: states, actions and image stamps of one episode, resampled on the fps grid."""
    episode_dir = Path(episode_dir)
    info = load_episode_info(episode_dir)
    joints = list(description.joints)
    arm = list(description.arm_joints)
    hand = list(description.hand_joints)
    col = {n: i for i, n in enumerate(joints)}
    state_t, state_q = [], []
    arm_t, arm_q, hand_t, hand_q = [], [], [], []
    cam_topics = {}
    for key, topic in config.cameras.items():
        cam_topics[topic] = key
        cam_topics[topic.rstrip("/") + "/compressed"] = key
    cam_stamps: dict[str, list[int]] = {k: [] for k in config.cameras}
    cam_stored: dict[str, tuple[str, str]] = {}
    wanted = {config.state_topic, config.arm_action_topic, config.hand_action_topic, *cam_topics}
    for m in iter_messages(_mcap_path(episode_dir), wanted):
        if m.topic == config.state_topic:
            msg = registry.decode(m.data, m.type_name)
            q = np.full(len(joints), np.nan)
            for name, value in zip(msg.name, msg.position):
                if name in col:
                    q[col[name]] = value
            state_t.append(_stamp(m.data, m.publish_time_ns, m.log_time_ns, True))
            state_q.append(q)
        elif m.topic == config.arm_action_topic:
            msg = registry.decode(m.data, m.type_name)
            if not msg.points:
                continue
            target = dict(zip(msg.joint_names, msg.points[-1].positions))
            if not all(n in target for n in arm):
                continue
            arm_t.append(_stamp(m.data, m.publish_time_ns, m.log_time_ns, True))
            arm_q.append([target[n] for n in arm])
        elif m.topic == config.hand_action_topic:
            msg = registry.decode(m.data, m.type_name)
            if len(msg.data) != len(hand):
                continue
            hand_t.append(m.publish_time_ns or m.log_time_ns)
            hand_q.append(list(msg.data))
        elif m.topic in cam_topics and m.type_name in (IMAGE_TYPE, COMPRESSED_TYPE):
            key = cam_topics[m.topic]
            if key in cam_stored and cam_stored[key][0] != m.topic:
                continue  # raw and compressed both present: use the first one seen
            cam_stored[key] = (m.topic, m.type_name)
            cam_stamps[key].append(_stamp(m.data, m.publish_time_ns, m.log_time_ns, True))
    if len(state_t) < 2:
        raise ExportError(f"{episode_dir}: fewer than 2 messages on {config.state_topic}")
    missing = [k for k, s in cam_stamps.items() if not s]
    if missing:
        raise ExportError(f"{episode_dir}: no images for camera(s) {missing} "
                          f"({[config.cameras[k] for k in missing]}); pass --camera to choose cameras")
    st = np.array(state_t, dtype=np.int64)
    sq = np.array(state_q)
    order = np.argsort(st, kind="stable")
    st, sq = st[order], sq[order]
    if np.isnan(sq).all(axis=0).any():
        absent = [joints[i] for i in np.where(np.isnan(sq).all(axis=0))[0]]
        raise ExportError(f"{episode_dir}: {config.state_topic} never has joints {absent}")
    image_order = {k: np.argsort(np.array(s, dtype=np.int64), kind="stable") for k, s in cam_stamps.items()}
    image_stamps = {k: np.array(s, dtype=np.int64)[image_order[k]] for k, s in cam_stamps.items()}
    t0 = max([int(st[0])] + [int(s[0]) for s in image_stamps.values()])
    t_end = int(st[-1])
    if t_end < t0:
        raise ExportError(f"{episode_dir}: joint states end before the first image")
    n = int((t_end - t0) * config.fps // 1_000_000_000) + 1
    t = t0 + np.round(np.arange(n) * (1e9 / config.fps)).astype(np.int64)
    state = np.empty((n, len(joints)))
    for j in range(len(joints)):
        valid = ~np.isnan(sq[:, j])
        state[:, j] = np.interp(t, st[valid], sq[valid, j])
    action = state.copy()  # hold the measured position until a part's first command
    n_arm = len(arm)
    for (stamps, values, sl) in ((arm_t, arm_q, slice(0, n_arm)), (hand_t, hand_q, slice(n_arm, len(joints)))):
        if not stamps:
            continue
        s = np.array(stamps, dtype=np.int64)
        v = np.array(values, dtype=float)
        o = np.argsort(s, kind="stable")
        held, ok = _hold(s[o], v[o], t)
        action[ok, sl] = held[ok]
    refs = {k: np.searchsorted(s, t, side="right") - 1 for k, s in image_stamps.items()}
    return EpisodeFrames(episode_dir, info, t0, state.astype(np.float32), action.astype(np.float32), refs,
                         cam_stored, image_order)


def iter_episode_images(frames: EpisodeFrames, key: str, registry: TypeRegistry, config: ExportConfig):
    """Second pass: the (H, W, 3) uint8 image of each frame of camera ``key``, decoded once per message."""
    topic, type_name = frames.image_topics[key]
    # frame k needs message file_pos[k] (file order); frames need non-decreasing stamps, usually file order too
    file_pos = [int(p) for p in frames.image_order[key][frames.image_refs[key]]]
    last_use = {p: k for k, p in enumerate(file_pos)}
    cache: dict[int, np.ndarray] = {}
    k = 0
    pos = -1
    for m in iter_messages(_mcap_path(frames.source), {topic}):
        pos += 1
        if pos not in last_use:
            continue
        pixels, encoding = decode_image(registry, type_name, m.data)
        cache[pos] = _to_video_rgb(pixels, encoding, config)
        while k < len(file_pos) and file_pos[k] in cache:
            yield cache[file_pos[k]]
            if last_use[file_pos[k]] == k:
                del cache[file_pos[k]]  # no later frame needs it
            k += 1
    if k != len(file_pos):
        raise ExportError(f"{frames.source}: {len(file_pos) - k} frames of {key} could not be read back")


def _to_video_rgb(pixels: np.ndarray, encoding: str, config: ExportConfig) -> np.ndarray:
    if encoding in ("16UC1", "mono16", "32FC1"):
        mm = depth_mm(pixels, encoding).astype(np.float32)
        gray = np.clip(mm * (255.0 / config.depth_max_mm), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.ascontiguousarray(to_rgb8(pixels, encoding))


def _is_depth(frames: EpisodeFrames, key: str) -> bool:
    return "depth" in frames.image_topics[key][0]


# ---------------------------------------------------------------------- statistics
def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """min/max/mean/std/count and quantiles over axis 0 of (N, D) values (as LeRobot computes them)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    out = {"min": values.min(axis=0), "max": values.max(axis=0), "mean": values.mean(axis=0),
           "std": values.std(axis=0), "count": np.array([len(values)])}
    for q in _QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(values, q, axis=0)
    return out


def image_stats(samples: list[np.ndarray], count: int) -> dict[str, np.ndarray]:
    """Per-channel stats of (H, W, 3) uint8 frames in [0, 1], shaped (3, 1, 1) like LeRobot's."""
    stack = np.stack(samples).astype(np.float64) / 255.0  # (S, H, W, 3)
    flat = stack.reshape(-1, 3)
    return {"min": flat.min(axis=0).reshape(3, 1, 1), "max": flat.max(axis=0).reshape(3, 1, 1),
            "mean": flat.mean(axis=0).reshape(3, 1, 1), "std": flat.std(axis=0).reshape(3, 1, 1),
            "count": np.array([count])}


def aggregate_image_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    counts = np.array([float(p["count"][0]) for p in parts])
    w = counts / counts.sum()
    mean = sum(wi * p["mean"] for wi, p in zip(w, parts))
    var = sum(wi * (p["std"] ** 2 + (p["mean"] - mean) ** 2) for wi, p in zip(w, parts))
    return {"min": np.min([p["min"] for p in parts], axis=0), "max": np.max([p["max"] for p in parts], axis=0),
            "mean": mean, "std": np.sqrt(var), "count": np.array([int(counts.sum())])}


def _jsonable(stats: dict[str, np.ndarray]) -> dict:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


# ---------------------------------------------------------------------- writing
class _VideoFile:
    """One MP4 per camera holding every episode's frames back to back (pts = global frame index)."""

    def __init__(self, path: Path, fps: int, width: int, height: int, config: ExportConfig):
        import os

        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), mode="w")
        options = {"g": str(config.gop), "crf": str(config.crf)}
        if config.vcodec == "libsvtav1":
            options["preset"] = "10"
        elif config.vcodec in ("libx264", "h264", "libx265"):
            options["preset"] = "veryfast"
        self.stream = self.container.add_stream(config.vcodec, rate=fps, options=options)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = config.pix_fmt
        self.stream.time_base = Fraction(1, fps)
        self.fps = fps
        self.frames = 0
        self.width, self.height = width, height

    def add(self, rgb: np.ndarray) -> None:
        import av

        if rgb.shape[:2] != (self.height, self.width):
            raise ExportError(f"{self.path}: image size changed to {rgb.shape[1]}x{rgb.shape[0]}, "
                              f"expected {self.width}x{self.height}")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _pandas_index_metadata(index_column: str, columns: list[tuple[str, str, str]]) -> bytes:
    """Schema metadata that makes pandas read ``index_column`` back as the DataFrame index (as LeRobot's
    ``tasks.parquet`` written by pandas has it)."""
    import pyarrow

    return json.dumps({
        "index_columns": [index_column],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": n, "field_name": n, "pandas_type": p, "numpy_type": t, "metadata": None}
                    for n, p, t in columns],
        "creator": {"library": "pyarrow", "version": pyarrow.__version__},
        "pandas_version": "2.2.3",
    }).encode()


def _fixed_list(values: np.ndarray):
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=pa.float32()), values.shape[1])


def find_episodes(path: Path) -> list[Path]:
    """An episode directory, or every episode directory under ``path`` (index order)."""
    path = Path(path)
    if (path / METADATA_FILE).is_file() or list(path.glob("*.mcap")):
        return [path]
    return [e.path for e in EpisodeStore(path).episodes()]


def export_lerobot(episodes: list[Path] | Path, out_dir: Path, config: ExportConfig | None = None) -> ExportReport:
    """Write a LeRobot v3.0 dataset at ``out_dir`` (which must not exist or be empty) from episode directories."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dexstack.robot import load_description

    config = config or ExportConfig()
    if int(config.fps) != config.fps or config.fps <= 0:
        raise ExportError(f"fps must be a positive integer, not {config.fps}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} exists and is not empty: choose a new folder (nothing is overwritten)")
    dirs = find_episodes(episodes) if isinstance(episodes, (str, Path)) else [Path(e) for e in episodes]
    registry = TypeRegistry()
    skipped: dict[str, str] = {}
    selected: list[tuple[Path, EpisodeInfo]] = []
    for d in dirs:
        if not (d / METADATA_FILE).is_file():
            skipped[str(d)] = "interrupted and not repaired (run `dexstack-record repair`)"
            continue
        info = load_episode_info(d)
        if info.status == STATUS_RECORDING:
            skipped[str(d)] = "still recording"
        elif config.only_success and info.success is False:
            skipped[str(d)] = "marked failed"
        else:
            selected.append((d, info))
    if not selected:
        raise ExportError(f"no exportable episodes in {episodes} (skipped: {skipped})")
    profiles = {config.robot_profile or info.robot_profile or "panda_allegro" for _, info in selected}
    if len(profiles) != 1:
        raise ExportError(f"episodes were recorded with different robot profiles {sorted(profiles)}")
    profile = profiles.pop()
    description = load_description(profile)
    joints = list(description.joints)

    out_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, int] = {}
    rows: dict[str, list] = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index",
                                             "episode_index", "index", "task_index")}
    episode_rows: list[dict] = []
    videos: dict[str, _VideoFile] = {}
    video_depth: dict[str, bool] = {}
    image_stat_parts: dict[str, list[dict]] = {}
    global_index = 0
    kept: list[Path] = []
    try:
        for episode_index, (d, info) in enumerate(selected):
            try:
                frames = read_episode(d, config, registry, description)
            except ExportError as exc:
                skipped[str(d)] = str(exc)
                continue
            episode_index = len(kept)
            task = info.task or config.default_task
            task_index = tasks.setdefault(task, len(tasks))
            n = frames.length
            ts = (np.arange(n) / config.fps).astype(np.float32)
            row = {"episode_index": episode_index, "tasks": [task], "length": n,
                   "data/chunk_index": 0, "data/file_index": 0,
                   "dataset_from_index": global_index, "dataset_to_index": global_index + n}
            ep_stats = {"observation.state": feature_stats(frames.state), "action": feature_stats(frames.action),
                        "timestamp": feature_stats(ts), "frame_index": feature_stats(np.arange(n)),
                        "episode_index": feature_stats(np.full(n, episode_index)),
                        "index": feature_stats(np.arange(global_index, global_index + n)),
                        "task_index": feature_stats(np.full(n, task_index))}
            for key in config.cameras:
                feature = f"observation.images.{key}"
                samples: list[np.ndarray] = []
                stride = max(1, n // 50)
                video = videos.get(feature)
                from_frame = video.frames if video is not None else 0
                for k, rgb in enumerate(iter_episode_images(frames, key, registry, config)):
                    if video is None:
                        video = videos[feature] = _VideoFile(
                            out_dir / VIDEO_PATH.format(video_key=feature, chunk_index=0, file_index=0),
                            config.fps, rgb.shape[1], rgb.shape[0], config)
                        video_depth[feature] = _is_depth(frames, key)
                    video.add(rgb)
                    if k % stride == 0:
                        samples.append(rgb[::4, ::4])
                stats = image_stats(samples, n)
                image_stat_parts.setdefault(feature, []).append(stats)
                ep_stats[feature] = stats
                row[f"videos/{feature}/chunk_index"] = 0
                row[f"videos/{feature}/file_index"] = 0
                row[f"videos/{feature}/from_timestamp"] = from_frame / config.fps
                row[f"videos/{feature}/to_timestamp"] = (from_frame + n) / config.fps
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            for feature, stats in ep_stats.items():
                for stat, value in stats.items():
                    row[f"stats/{feature}/{stat}"] = np.asarray(value).tolist()
            row["dexstack/source"] = str(d)
            row["dexstack/success"] = "unknown" if info.success is None else str(info.success).lower()
            row["dexstack/t0_ns"] = int(frames.t0_ns)
            episode_rows.append(row)
            rows["observation.state"].append(frames.state)
            rows["action"].append(frames.action)
            rows["timestamp"].append(ts)
            rows["frame_index"].append(np.arange(n, dtype=np.int64))
            rows["episode_index"].append(np.full(n, episode_index, dtype=np.int64))
            rows["index"].append(np.arange(global_index, global_index + n, dtype=np.int64))
            rows["task_index"].append(np.full(n, task_index, dtype=np.int64))
            global_index += n
            kept.append(d)
    finally:
        for video in videos.values():
            video.close()
    if not kept:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ExportError(f"no episode could be exported: {skipped}")

    # data
    state = np.concatenate(rows["observation.state"])
    action = np.concatenate(rows["action"])
    data = pa.table({
        "observation.state": _fixed_list(state),
        "action": _fixed_list(action),
        "timestamp": pa.array(np.concatenate(rows["timestamp"]), type=pa.float32()),
        "frame_index": pa.array(np.concatenate(rows["frame_index"]), type=pa.int64()),
        "episode_index": pa.array(np.concatenate(rows["episode_index"]), type=pa.int64()),
        "index": pa.array(np.concatenate(rows["index"]), type=pa.int64()),
        "task_index": pa.array(np.concatenate(rows["task_index"]), type=pa.int64()),
    })
    data_path = out_dir / DATA_PATH.format(chunk_index=0, file_index=0)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, data_path, compression="snappy")

    # episodes
    episodes_path = out_dir / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)

    # tasks
    names = sorted(tasks, key=tasks.get)
    task_table = pa.table({"task_index": pa.array([tasks[t] for t in names], type=pa.int64()),
                           "task": pa.array(names, type=pa.string())})
    task_table = task_table.replace_schema_metadata({b"pandas": _pandas_index_metadata(
        "task", [("task_index", "int64", "int64"), ("task", "unicode", "object")])})
    pq.write_table(task_table, out_dir / "meta" / "tasks.parquet")

    # stats
    ts_all = np.concatenate(rows["timestamp"])
    stats = {"observation.state": feature_stats(state), "action": feature_stats(action),
             "timestamp": feature_stats(ts_all), "frame_index": feature_stats(np.concatenate(rows["frame_index"])),
             "episode_index": feature_stats(np.concatenate(rows["episode_index"])),
             "index": feature_stats(np.concatenate(rows["index"])),
             "task_index": feature_stats(np.concatenate(rows["task_index"]))}
    for feature, parts in image_stat_parts.items():
        stats[feature] = aggregate_image_stats(parts)
    (out_dir / "meta" / "stats.json").write_text(json.dumps({k: _jsonable(v) for k, v in stats.items()}, indent=4))

    # info
    features: dict[str, dict] = {
        "observation.state": {"dtype": "float32", "shape": [len(joints)], "names": joints},
        "action": {"dtype": "float32", "shape": [len(joints)], "names": joints},
    }
    for feature, video in videos.items():
        features[feature] = {
            "dtype": "video", "shape": [video.height, video.width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": video.height, "video.width": video.width,
                     "video.codec": _CODEC_NAMES.get(config.vcodec, config.vcodec), "video.pix_fmt": config.pix_fmt,
                     "video.is_depth_map": video_depth[feature], "video.fps": config.fps, "video.channels": 3,
                     "has_audio": False,
                     **({"dexstack.depth_max_mm": config.depth_max_mm} if video_depth[feature] else {})},
        }
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": profile,
        "total_episodes": len(kept),
        "total_frames": int(global_index),
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_MB,
        "fps": int(config.fps),
        "splits": {"train": f"0:{len(kept)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if videos else None,
        "features": features,
    }
    (out_dir / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return ExportReport(out_dir, kept, skipped, int(global_index), int(config.fps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dexstack.record.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("episodes", type=Path, help="an episode directory or the folder holding episode_* dirs")
    parser.add_argument("out_dir", type=Path, help="new dataset folder (must not exist or be empty)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--camera", action="append", default=None, metavar="KEY=TOPIC",
                        help="camera to export as observation.images.KEY (repeatable; default color and depth)")
    parser.add_argument("--no-cameras", action="store_true", help="export states and actions only")
    parser.add_argument("--vcodec", default="libsvtav1", help="PyAV encoder: libsvtav1 (LeRobot default), libx264")
    parser.add_argument("--robot-profile", default="", help="override the profile stored with the episodes")
    parser.add_argument("--only-success", action="store_true", help="skip episodes marked failed")
    parser.add_argument("--depth-max-mm", type=int, default=2000)
    args = parser.parse_args(argv)
    cameras = dict(DEFAULT_CAMERAS)
    if args.camera:
        try:
            cameras = dict(c.split("=", 1) for c in args.camera)
        except ValueError:
            parser.error("--camera is written KEY=TOPIC")
    if args.no_cameras:
        cameras = {}
    config = ExportConfig(fps=args.fps, cameras=cameras, vcodec=args.vcodec, robot_profile=args.robot_profile,
                          only_success=args.only_success, depth_max_mm=args.depth_max_mm)
    try:
        report = export_lerobot(args.episodes, args.out_dir, config)
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    for path, reason in report.skipped.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"wrote {report.out_dir}: {len(report.episodes)} episodes, {report.total_frames} frames at "
          f"{report.fps} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
