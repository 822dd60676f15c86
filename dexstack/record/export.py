"""Export recorded episodes to a LeRobot dataset (format v3.0). No ROS imports.

``python -m dexstack.record.export <episodes_dir> <out_dir> [--fps 30] [--depth-format png16]`` writes::

    out_dir/meta/info.json                      codebase_version "v3.0", fps, features, chunking
    out_dir/meta/stats.json                     min/max/mean/std/count + q01/q10/q50/q90/q99 per feature
    out_dir/meta/tasks.parquet                  task text -> task_index (pandas index "task")
    out_dir/meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, file indices, stats
    out_dir/data/chunk-XXX/file-YYY.parquet     one row per frame: observation.state, action, timestamp, indices
    out_dir/videos/observation.images.<cam>/chunk-XXX/file-YYY.mp4   every episode's frames, back to back

This module reads episodes (the rosbag2 MCAP recordings) and resamples them; :mod:`dexstack.record.lerobot_writer`
writes the dataset (files, chunking, metadata) and :mod:`dexstack.record.stats` computes the statistics.

Frames are on a fixed ``fps`` grid resampled by the messages' own header stamps (not by arrival time: a loop that
ran late does not shift the data). Frame k of an episode is at ``t0 + k/fps`` where ``t0`` is the first instant
with a joint state and an image of every camera. ``observation.state`` = joint positions from ``/joint_states``
interpolated linearly at that instant, in the robot description's joint order (``load_description(profile)``).
``action`` = the safety-gated driver commands on the robot profile's command topics (``arm.command.topic``: the
last point's positions; ``hand.command.topic``) held from the latest one at or before the instant; before a part's
first command its action is the measured position (hold). A part with no command in a whole episode is an error
(the action column would silently repeat the state) unless ``allow_missing_actions``. Camera frames are the latest
image stamped at or before the instant. Depth (16UC1, mm) is exported as an 8-bit gray video scaled from 0 to
``depth_max_mm`` (``depth_format: video8``) or losslessly as 16-bit PNG frames (``png16``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
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
from dexstack.record.lerobot_writer import (
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODES_PATH,
    VIDEO_PATH,
    DatasetWriteError,
    LeRobotWriter,
    WriterConfig,
)
from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry, header_stamp_ns
from dexstack.record.stats import feature_stats

__all__ = ["CODEBASE_VERSION", "DATA_PATH", "EPISODES_PATH", "VIDEO_PATH", "ExportConfig", "ExportError",
           "ExportReport", "MissingActionsError", "export_lerobot", "feature_stats", "find_episodes", "read_episode"]

DEFAULT_CAMERAS = {
    "color": "/camera/camera/color/image_raw",
    "depth": "/camera/camera/aligned_depth_to_color/image_raw",
}


class ExportError(ValueError):
    """An episode cannot be exported (no joint states, missing camera, ...) or the output folder exists."""


class MissingActionsError(ExportError):
    """A commanded part of the robot has no command in an episode: the whole export stops (never skipped)."""


@dataclass
class ExportConfig:
    fps: int = 30  # frames per second of the dataset (LeRobot wants an integer)
    cameras: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CAMERAS))  # key -> Image topic
    state_topic: str = "/joint_states"
    arm_action_topic: str = ""  # "" = the robot profile's arm.command.topic
    hand_action_topic: str = ""  # "" = the robot profile's hand.command.topic
    allow_missing_actions: bool = False  # a part never commanded: hold its measured position instead of failing
    robot_profile: str = ""  # "" = the profile stored with each episode
    vcodec: str = "libsvtav1"  # LeRobot's default; "libx264" encodes faster
    pix_fmt: str = "yuv420p"
    crf: int = 30
    gop: int = 2  # keyframe every 2 frames: cheap random access, as LeRobot encodes
    depth_format: str = "video8"  # video8: 8-bit gray video (lossy, depth_max_mm / 255 steps); png16: lossless
    depth_max_mm: int = 2000  # video8: depth -> 8-bit gray scale
    chunks_size: int = 1000
    data_files_size_in_mb: float = 100
    video_files_size_in_mb: float = 500
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
    arm_topic = config.arm_action_topic or description.profile.arm.command.topic
    hand_topic = config.hand_action_topic or description.profile.hand.command.topic
    wanted = {config.state_topic, arm_topic, hand_topic, *cam_topics}
    for m in iter_messages(_mcap_path(episode_dir), wanted):
        if m.topic == config.state_topic:
            msg = registry.decode(m.data, m.type_name)
            q = np.full(len(joints), np.nan)
            for name, value in zip(msg.name, msg.position):
                if name in col:
                    q[col[name]] = value
            state_t.append(_stamp(m.data, m.publish_time_ns, m.log_time_ns, True))
            state_q.append(q)
        elif m.topic == arm_topic:
            msg = registry.decode(m.data, m.type_name)
            if not msg.points:
                continue
            target = dict(zip(msg.joint_names, msg.points[-1].positions))
            if not all(n in target for n in arm):
                continue
            arm_t.append(_stamp(m.data, m.publish_time_ns, m.log_time_ns, True))
            arm_q.append([target[n] for n in arm])
        elif m.topic == hand_topic:
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
    for part, topic, stamps in (("arm", arm_topic, arm_t), ("hand", hand_topic, hand_t)):
        if not stamps and not config.allow_missing_actions:
            raise MissingActionsError(
                f"{episode_dir}: no {part} command on {topic} (the {part} driver topic of robot profile "
                f"'{description.profile.name}'), so its action would only repeat the measured state; record the "
                "driver topics, pass the right profile, or allow_missing_actions (--allow-missing-actions) to hold")
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


def iter_episode_images(frames: EpisodeFrames, key: str, registry: TypeRegistry):
    """Second pass: the image of each frame of camera ``key`` ((H, W, 3) uint8 RGB, or (H, W) uint16 depth in mm),
    decoded once per message."""
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
        cache[pos] = _camera_image(pixels, encoding)
        while k < len(file_pos) and file_pos[k] in cache:
            yield cache[file_pos[k]]
            if last_use[file_pos[k]] == k:
                del cache[file_pos[k]]  # no later frame needs it
            k += 1
    if k != len(file_pos):
        raise ExportError(f"{frames.source}: {len(file_pos) - k} frames of {key} could not be read back")


def _camera_image(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) uint16 depth in mm for depth encodings, else (H, W, 3) uint8 RGB."""
    if encoding in ("16UC1", "mono16", "32FC1"):
        return depth_mm(pixels, encoding)
    return np.ascontiguousarray(to_rgb8(pixels, encoding))


def _is_depth(frames: EpisodeFrames, key: str) -> bool:
    return "depth" in frames.image_topics[key][0]


def find_episodes(path: Path) -> list[Path]:
    """An episode directory, or every episode directory under ``path`` (index order)."""
    path = Path(path)
    if (path / METADATA_FILE).is_file() or list(path.glob("*.mcap")):
        return [path]
    return [e.path for e in EpisodeStore(path).episodes()]


def _select(dirs: list[Path], config: ExportConfig, skipped: dict[str, str]) -> list[tuple[Path, EpisodeInfo]]:
    selected = []
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
    return selected


def export_lerobot(episodes: list[Path] | Path, out_dir: Path, config: ExportConfig | None = None) -> ExportReport:
    """Write a LeRobot v3.0 dataset at ``out_dir`` (which must not exist or be empty) from episode directories."""
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
    selected = _select(dirs, config, skipped)
    if not selected:
        raise ExportError(f"no exportable episodes in {episodes} (skipped: {skipped})")
    profiles = {config.robot_profile or info.robot_profile or "panda_allegro" for _, info in selected}
    if len(profiles) != 1:
        raise ExportError(f"episodes were recorded with different robot profiles {sorted(profiles)}")
    profile = profiles.pop()
    description = load_description(profile)
    # read every episode first: a missing part's commands stops the export before anything is written
    readable: list[EpisodeFrames] = []
    for d, _info in selected:
        try:
            readable.append(read_episode(d, config, registry, description))
        except MissingActionsError:
            raise
        except ExportError as exc:
            skipped[str(d)] = str(exc)
    if not readable:
        raise ExportError(f"no episode could be exported: {skipped}")
    kinds = {}
    for key in config.cameras:
        kinds[key] = "depth" if _is_depth(readable[0], key) else "color"
    try:
        writer = LeRobotWriter(out_dir, WriterConfig(
            fps=int(config.fps), robot_type=profile, chunks_size=config.chunks_size,
            data_files_size_in_mb=config.data_files_size_in_mb, video_files_size_in_mb=config.video_files_size_in_mb,
            vcodec=config.vcodec, pix_fmt=config.pix_fmt, crf=config.crf, gop=config.gop,
            depth_format=config.depth_format, depth_max_mm=config.depth_max_mm), list(description.joints), kinds)
    except DatasetWriteError as exc:
        raise ExportError(str(exc)) from None
    try:
        for frames in readable:
            images = {key: iter_episode_images(frames, key, registry) for key in config.cameras}
            writer.add_episode(frames.state, frames.action, frames.info.task or config.default_task, images, extra={
                "dexstack/source": frames.source.name,  # the episode folder's name, never a path of this machine
                "dexstack/success": "unknown" if frames.info.success is None else str(frames.info.success).lower(),
                "dexstack/t0_ns": int(frames.t0_ns)})
        writer.finalize()
    except (DatasetWriteError, ExportError) as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ExportError(str(exc)) from None
    return ExportReport(out_dir, [f.source for f in readable], skipped, int(writer.frames), int(config.fps))


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
    parser.add_argument("--depth-max-mm", type=int, default=2000, help="video8 depth: the value mapped to white")
    parser.add_argument("--depth-format", choices=("video8", "png16"), default="video8",
                        help="depth as an 8-bit gray video (lossy) or 16-bit PNG frames in the data files (lossless)")
    parser.add_argument("--allow-missing-actions", action="store_true",
                        help="a part never commanded in an episode holds its measured position (default: error)")
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
                          only_success=args.only_success, depth_max_mm=args.depth_max_mm,
                          depth_format=args.depth_format, allow_missing_actions=args.allow_missing_actions)
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
