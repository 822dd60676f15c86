"""A LeRobot v3.0 dataset writer: ``add_episode`` per episode, ``finalize`` once. No ROS imports.

Layout (paths as declared in ``meta/info.json``)::

    meta/info.json, meta/stats.json, meta/tasks.parquet, meta/episodes/chunk-000/file-000.parquet
    data/chunk-{c:03d}/file-{f:03d}.parquet                 frames: state, action, indices (+ PNG depth images)
    videos/<feature>/chunk-{c:03d}/file-{f:03d}.mp4         each camera's frames, episodes back to back

Chunking follows what ``info.json`` declares, as LeRobot's own writer does: episodes are appended to the current
data file until it holds ``data_files_size_in_mb`` (its in-memory Arrow size, an upper bound of the snappy file),
then a new file starts; a video file rolls over at ``video_files_size_in_mb`` on disk; every ``chunks_size`` files
the chunk index advances. An episode never spans two files; its rows in ``meta/episodes`` say which file holds it
and, for videos, its first and last timestamp inside that file.

Cameras are ``color`` (8-bit RGB, encoded with ``vcodec``) or ``depth`` (16-bit millimetres). Depth is written
either as an 8-bit gray video scaled from 0 to ``depth_max_mm`` (``depth_format: video8``, ~7.8 mm steps at 2 m) or
losslessly as one 16-bit PNG per frame in the data parquet (``depth_format: png16``: LeRobot's ``image`` feature
type, a ``{bytes, path}`` struct that ``datasets.Image`` decodes, flagged ``is_depth_map`` with ``depth_unit: mm``).
The metadata holds no absolute path of this machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from dexstack.record import stats as S

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
_CODEC_NAMES = {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "h264": "h264", "libx265": "hevc",
                "mpeg4": "mpeg4"}
_INDEX_COLUMNS = (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                  ("index", "int64"), ("task_index", "int64"))


class DatasetWriteError(ValueError):
    """The dataset cannot be written as asked (an image changed size, the folder is not empty, ...)."""


@dataclass
class WriterConfig:
    fps: int = 30
    robot_type: str = ""
    chunks_size: int = 1000  # files per chunk folder
    data_files_size_in_mb: float = 100
    video_files_size_in_mb: float = 500
    vcodec: str = "libsvtav1"  # LeRobot's default; "libx264" encodes faster
    pix_fmt: str = "yuv420p"
    crf: int = 30
    gop: int = 2  # keyframe every 2 frames: cheap random access, as LeRobot encodes
    depth_format: Literal["video8", "png16"] = "video8"
    depth_max_mm: int = 2000  # video8: depth -> 8-bit gray scale

    def __post_init__(self):
        if int(self.fps) != self.fps or self.fps <= 0:
            raise DatasetWriteError(f"fps must be a positive integer, not {self.fps}")
        if self.depth_format not in ("video8", "png16"):
            raise DatasetWriteError(f"depth_format '{self.depth_format}' is not one of ['video8', 'png16']")
        if self.chunks_size < 1 or self.data_files_size_in_mb <= 0 or self.video_files_size_in_mb <= 0:
            raise DatasetWriteError("chunks_size and the file sizes must be positive")


@dataclass
class _Cursor:
    """(chunk, file) of the file being filled; ``advance`` starts the next file, and the next chunk every
    ``chunks_size`` files."""

    chunks_size: int
    chunk_index: int = 0
    file_index: int = 0

    def advance(self) -> None:
        self.file_index += 1
        if self.file_index >= self.chunks_size:
            self.chunk_index, self.file_index = self.chunk_index + 1, 0


class _VideoFile:
    """One MP4 of one camera holding consecutive episodes' frames (pts = frame index in the file)."""

    def __init__(self, path: Path, config: WriterConfig, width: int, height: int):
        import os

        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.width, self.height, self.frames = path, int(config.fps), width, height, 0
        self.container = av.open(str(path), mode="w")
        options = {"g": str(config.gop), "crf": str(config.crf)}
        if config.vcodec == "libsvtav1":
            options["preset"] = "10"
        elif config.vcodec in ("libx264", "h264", "libx265"):
            options["preset"] = "veryfast"
        self.stream = self.container.add_stream(config.vcodec, rate=self.fps, options=options)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = config.pix_fmt
        self.stream.time_base = Fraction(1, self.fps)

    def add(self, rgb: np.ndarray) -> None:
        import av

        if rgb.shape[:2] != (self.height, self.width):
            raise DatasetWriteError(f"{self.path.name}: image size changed to {rgb.shape[1]}x{rgb.shape[0]}, "
                                    f"expected {self.width}x{self.height}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20 if self.path.exists() else 0.0

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def depth_to_gray8(depth_mm: np.ndarray, depth_max_mm: int) -> np.ndarray:
    """(H, W) uint16 mm -> (H, W, 3) uint8 gray, 0..depth_max_mm linearly (the 8-bit depth video)."""
    gray = np.clip(depth_mm.astype(np.float32) * (255.0 / depth_max_mm), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _fixed_list(values: np.ndarray):
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=pa.float32()), values.shape[1])


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


@dataclass
class _Camera:
    key: str  # feature name observation.images.<key>
    kind: Literal["color", "depth"]
    video: _VideoFile | None = None
    cursor: _Cursor | None = None
    shape: tuple[int, int] | None = None  # (H, W)
    stats: list[dict] = field(default_factory=list)

    @property
    def feature(self) -> str:
        return f"observation.images.{self.key}"


class LeRobotWriter:
    """Write a LeRobot v3.0 dataset into ``out_dir`` (created; it must not exist or be empty)."""

    def __init__(self, out_dir: Path, config: WriterConfig, joint_names: list[str], cameras: dict[str, str]):
        out_dir = Path(out_dir)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise DatasetWriteError(f"{out_dir} exists and is not empty: choose a new folder (nothing is overwritten)")
        for key, kind in cameras.items():
            if kind not in ("color", "depth"):
                raise DatasetWriteError(f"camera '{key}': kind '{kind}' is not 'color' or 'depth'")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.config, self.joints = out_dir, config, list(joint_names)
        self.cameras = {k: _Camera(k, kind, cursor=_Cursor(config.chunks_size)) for k, kind in cameras.items()}
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self.frames = 0
        self._data_cursor = _Cursor(config.chunks_size)
        self._data_tables: list = []  # tables of the data file being filled
        self._data_files: list[str] = []
        self._stats_parts: dict[str, list[dict]] = {}
        self._finalized = False

    def _png_depth(self, cam: _Camera) -> bool:
        return cam.kind == "depth" and self.config.depth_format == "png16"

    # ------------------------------------------------------------------ episodes
    def add_episode(self, state: np.ndarray, action: np.ndarray, task: str,
                    images: dict[str, Iterable[np.ndarray]] | None = None, extra: dict | None = None) -> int:
        """Append one episode: (N, D) ``state`` and ``action``, the task text, each camera's N frames ((H, W, 3)
        uint8 color or (H, W) uint16 depth in mm; any iterable, consumed once) and extra columns for its row in
        ``meta/episodes`` (plain values). Returns its episode index."""
        import pyarrow as pa

        if self._finalized:
            raise DatasetWriteError("the dataset is already finalized")
        state, action = np.asarray(state, np.float32), np.asarray(action, np.float32)
        n = len(state)
        if n == 0 or state.shape != (n, len(self.joints)) or action.shape != state.shape:
            raise DatasetWriteError(f"state and action must both be (N>0, {len(self.joints)}), got {state.shape} "
                                    f"and {action.shape}")
        images = images or {}
        if set(images) != set(self.cameras):
            raise DatasetWriteError(f"episode images for {sorted(images)}, the dataset has cameras "
                                    f"{sorted(self.cameras)}")
        episode_index = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        ts = (np.arange(n) / self.config.fps).astype(np.float32)
        index = np.arange(self.frames, self.frames + n, dtype=np.int64)
        columns = {"observation.state": _fixed_list(state), "action": _fixed_list(action),
                   "timestamp": pa.array(ts, type=pa.float32()),
                   "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                   "episode_index": pa.array(np.full(n, episode_index, dtype=np.int64)),
                   "index": pa.array(index), "task_index": pa.array(np.full(n, task_index, dtype=np.int64))}
        ep_stats = {"observation.state": S.feature_stats(state), "action": S.feature_stats(action),
                    "timestamp": S.feature_stats(ts), "frame_index": S.feature_stats(np.arange(n)),
                    "episode_index": S.feature_stats(np.full(n, episode_index)),
                    "index": S.feature_stats(index), "task_index": S.feature_stats(np.full(n, task_index))}
        row: dict = {"episode_index": episode_index, "tasks": [task], "length": n}
        for key, cam in self.cameras.items():
            if self._png_depth(cam):
                column, ep_stats[cam.feature] = self._png_frames(cam, images[key], n)
                columns[cam.feature] = column
            else:
                ep_stats[cam.feature] = self._video_frames(cam, images[key], n, row)
        self._add_data(pa.table(columns), row)
        row["dataset_from_index"], row["dataset_to_index"] = self.frames, self.frames + n
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        for feature, feature_stats in ep_stats.items():
            self._stats_parts.setdefault(feature, []).append(feature_stats)
            for stat, value in feature_stats.items():
                row[f"stats/{feature}/{stat}"] = np.asarray(value).tolist()
        row.update(extra or {})
        self.episodes.append(row)
        self.frames += n
        return episode_index

    def _sampled(self, n: int) -> set[int]:
        return set(S.sample_indices(n).tolist())

    def _video_frames(self, cam: _Camera, frames: Iterable[np.ndarray], n: int, row: dict) -> dict:
        cfg, samples, wanted, k = self.config, [], self._sampled(n), 0
        if cam.video is not None and cam.video.size_mb() >= cfg.video_files_size_in_mb:
            cam.video.close()  # full: this episode starts the next file
            cam.video = None
            cam.cursor.advance()
        from_frame = cam.video.frames if cam.video is not None else 0
        for k, image in enumerate(frames):
            rgb = depth_to_gray8(image, cfg.depth_max_mm) if cam.kind == "depth" else image
            if cam.video is None:
                path = self.out_dir / VIDEO_PATH.format(video_key=cam.feature, chunk_index=cam.cursor.chunk_index,
                                                        file_index=cam.cursor.file_index)
                cam.video = _VideoFile(path, cfg, rgb.shape[1], rgb.shape[0])
                cam.shape = rgb.shape[:2]
            cam.video.add(rgb)
            if k in wanted:
                samples.append(S.downsample(rgb))
        if cam.video is None or cam.video.frames - from_frame != n:
            got = 0 if cam.video is None else cam.video.frames - from_frame
            raise DatasetWriteError(f"camera '{cam.key}': {got} frames for an episode of {n}")
        row[f"videos/{cam.feature}/chunk_index"] = cam.cursor.chunk_index
        row[f"videos/{cam.feature}/file_index"] = cam.cursor.file_index
        row[f"videos/{cam.feature}/from_timestamp"] = from_frame / cfg.fps
        row[f"videos/{cam.feature}/to_timestamp"] = (from_frame + n) / cfg.fps
        return S.image_stats(samples, n, scale=255.0)

    def _png_frames(self, cam: _Camera, frames: Iterable[np.ndarray], n: int):
        import cv2
        import pyarrow as pa

        encoded, samples, wanted = [], [], self._sampled(n)
        for k, depth in enumerate(frames):
            depth = np.ascontiguousarray(depth, dtype=np.uint16)
            if cam.shape is None:
                cam.shape = depth.shape[:2]
            if depth.shape[:2] != cam.shape:
                raise DatasetWriteError(f"camera '{cam.key}': image size changed to {depth.shape[1]}x"
                                        f"{depth.shape[0]}, expected {cam.shape[1]}x{cam.shape[0]}")
            ok, buf = cv2.imencode(".png", depth, [cv2.IMWRITE_PNG_COMPRESSION, 3])
            if not ok:
                raise DatasetWriteError(f"camera '{cam.key}': OpenCV could not encode a 16-bit PNG")
            encoded.append({"bytes": buf.tobytes(), "path": None})
            if k in wanted:
                samples.append(S.downsample(depth))
        if len(encoded) != n:
            raise DatasetWriteError(f"camera '{cam.key}': {len(encoded)} frames for an episode of {n}")
        column = pa.array(encoded, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        return column, S.image_stats(samples, n, scale=1.0)

    def _add_data(self, table, row: dict) -> None:
        current = sum(t.nbytes for t in self._data_tables)
        if self._data_tables and current / 2**20 >= self.config.data_files_size_in_mb:
            self._flush_data()
            self._data_cursor.advance()
        if self._data_tables and table.schema != self._data_tables[0].schema:
            table = table.cast(self._data_tables[0].schema)
        self._data_tables.append(table)
        row["data/chunk_index"], row["data/file_index"] = self._data_cursor.chunk_index, self._data_cursor.file_index

    def _flush_data(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._data_tables:
            return
        rel = DATA_PATH.format(chunk_index=self._data_cursor.chunk_index, file_index=self._data_cursor.file_index)
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(self._data_tables), path, compression="snappy")
        self._data_files.append(rel)
        self._data_tables = []

    # ------------------------------------------------------------------ finalize
    def finalize(self) -> dict:
        """Close the files and write the metadata; returns info.json's content. Nothing is added after this."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._finalized:
            raise DatasetWriteError("the dataset is already finalized")
        self._finalized = True
        for cam in self.cameras.values():
            if cam.video is not None:
                cam.video.close()
        self._flush_data()
        if not self.episodes:
            raise DatasetWriteError("no episode was added")
        episodes_path = self.out_dir / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), episodes_path)

        names = sorted(self.tasks, key=self.tasks.get)
        task_table = pa.table({"task_index": pa.array([self.tasks[t] for t in names], type=pa.int64()),
                               "task": pa.array(names, type=pa.string())})
        task_table = task_table.replace_schema_metadata({b"pandas": _pandas_index_metadata(
            "task", [("task_index", "int64", "int64"), ("task", "unicode", "object")])})
        pq.write_table(task_table, self.out_dir / "meta" / "tasks.parquet")

        stats = {feature: S.aggregate_stats(parts) for feature, parts in self._stats_parts.items()}
        (self.out_dir / "meta" / "stats.json").write_text(
            json.dumps({k: S.jsonable(v) for k, v in stats.items()}, indent=4))
        info = self._info()
        (self.out_dir / "meta" / "info.json").write_text(json.dumps(info, indent=4))
        return info

    def _info(self) -> dict:
        cfg = self.config
        features: dict[str, dict] = {
            "observation.state": {"dtype": "float32", "shape": [len(self.joints)], "names": self.joints},
            "action": {"dtype": "float32", "shape": [len(self.joints)], "names": self.joints},
        }
        has_video = False
        for cam in self.cameras.values():
            h, w = cam.shape or (0, 0)
            if self._png_depth(cam):
                features[cam.feature] = {"dtype": "image", "shape": [h, w, 1],
                                         "names": ["height", "width", "channels"],
                                         "info": {"is_depth_map": True, "depth_unit": "mm",
                                                  "dexstack.encoding": "png 16-bit (lossless)"}}
                continue
            has_video = True
            depth = cam.kind == "depth"
            features[cam.feature] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w,
                         "video.codec": _CODEC_NAMES.get(cfg.vcodec, cfg.vcodec), "video.pix_fmt": cfg.pix_fmt,
                         "video.is_depth_map": depth, "video.fps": int(cfg.fps), "video.channels": 3,
                         "has_audio": False, **({"dexstack.depth_max_mm": cfg.depth_max_mm} if depth else {})},
            }
        for name, dtype in _INDEX_COLUMNS:
            features[name] = {"dtype": dtype, "shape": [1], "names": None}
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": cfg.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": int(self.frames),
            "total_tasks": len(self.tasks),
            "chunks_size": int(cfg.chunks_size),
            "data_files_size_in_mb": cfg.data_files_size_in_mb,
            "video_files_size_in_mb": cfg.video_files_size_in_mb,
            "fps": int(cfg.fps),
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if has_video else None,
            "features": features,
        }
