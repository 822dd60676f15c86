"""PNG plots and a short MP4 for reports, from a recorded episode; the shared ``--plot`` helper of the benchmarks.

No ROS imports: episodes are read with the project's MCAP reader (``dexstack/record``). Matplotlib runs on its
Agg backend (no display). Every function returns the path it wrote.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dexstack.record.images import COMPRESSED_TYPE, IMAGE_TYPE, decode_image, to_rgb8
from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry
from dexstack.robot.description import RobotDescription
from dexstack.transforms import quat_xyzw_to_matrix

COLOR_TOPIC = "/camera/camera/color/image_raw"
OBJECT_TOPIC = "/dexstack/object_pose"
OBJECT_GT_TOPIC = "/dexstack/sim/object_pose_gt"
BEFORE = {"arm": "/dexstack/arm/command", "hand": "/dexstack/hand/command"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------------- benchmarks
def add_plot_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plot", metavar="PNG", default="", help="also write the results as a PNG plot here")


def bench_plot(path: str | Path, title: str, result: dict, samples: dict[str, Sequence[float]] | None = None,
               unit: str = "ms") -> Path:
    """The bench's JSON numbers as bars (left) and, where given, the distributions behind them (right:
    histograms of per-sample times with p50/p99 marked)."""
    plt = _pyplot()
    numbers = {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and np.isfinite(v)}
    ncols = 2 if samples else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, max(2.5, 0.35 * len(numbers) + 1)), squeeze=False)
    ax = axes[0, 0]
    names = list(numbers)[::-1]
    values = [numbers[n] for n in names]
    ax.barh(names, values, color="#4c78a8")
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 1e3:
        ax.set_xscale("log")
    for y, v in enumerate(values):
        ax.annotate(f"{v:g}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_title("results")
    ax.tick_params(axis="y", labelsize=7)
    if samples:
        ax = axes[0, 1]
        for name, data in samples.items():
            data = np.asarray(data, dtype=float)
            if data.size:
                ax.hist(data, bins=60, alpha=0.6, label=f"{name} (p50 {np.percentile(data, 50):.3g}, "
                        f"p99 {np.percentile(data, 99):.3g})")
                for q, style in ((50, "-"), (99, "--")):
                    ax.axvline(np.percentile(data, q), color="k", linestyle=style, linewidth=0.8)
        ax.set_xlabel(unit)
        ax.set_ylabel("samples")
        ax.set_title("distribution (solid p50, dashed p99)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- episodes
class EpisodeSeries:
    """Time series of one episode (seconds from its first message): joints measured and commanded before/after
    the safety gate, arrival times per topic, estimated and true object poses, colour frames."""

    def __init__(self, episode_dir: str | Path, description: RobotDescription, registry: TypeRegistry | None = None,
                 keep_frames: int = 0, frame_stride: int = 1):
        self.description = description
        registry = registry or TypeRegistry()
        mcaps = sorted(Path(episode_dir).glob("*.mcap"))
        if not mcaps:
            raise FileNotFoundError(f"{episode_dir}: no .mcap file")
        after = {"arm": description.profile.arm.command.topic, "hand": description.profile.hand.command.topic}
        self.arrivals: dict[str, list[int]] = {}
        self.measured: list[tuple[int, dict[str, float]]] = []
        self.commands: dict[str, list[tuple[int, dict[str, float]]]] = {"before": [], "after": []}
        self.poses: dict[str, list[tuple[int, np.ndarray]]] = {"estimate": [], "truth": []}
        self.frames: list[tuple[int, np.ndarray]] = []
        n_color = 0
        hand = list(description.hand_joints)
        for m in iter_messages(mcaps[0]):
            self.arrivals.setdefault(m.topic, []).append(m.log_time_ns)
            kind = next((k for k, topics in (("before", BEFORE), ("after", after)) if m.topic in topics.values()),
                        None)
            if m.topic == "/joint_states":
                msg = registry.decode(m.data, m.type_name)
                self.measured.append((_stamp(msg) or m.log_time_ns, dict(zip(msg.name, map(float, msg.position)))))
            elif kind is not None:
                msg = registry.decode(m.data, m.type_name)
                if hasattr(msg, "points"):
                    if len(msg.points):
                        values = dict(zip(msg.joint_names, map(float, msg.points[-1].positions)))
                        self.commands[kind].append((m.log_time_ns, values))
                elif len(msg.data) == len(hand):
                    self.commands[kind].append((m.log_time_ns, dict(zip(hand, map(float, msg.data)))))
            elif m.topic in (OBJECT_TOPIC, OBJECT_GT_TOPIC):
                msg = registry.decode(m.data, m.type_name)
                p, q = msg.pose.position, msg.pose.orientation
                T = np.eye(4)
                T[:3, :3] = quat_xyzw_to_matrix((q.x, q.y, q.z, q.w))
                T[:3, 3] = (p.x, p.y, p.z)
                self.poses["estimate" if m.topic == OBJECT_TOPIC else "truth"].append((_stamp(msg), T))
            elif m.topic.removesuffix("/compressed") == COLOR_TOPIC and m.type_name in (IMAGE_TYPE, COMPRESSED_TYPE):
                n_color += 1
                if len(self.frames) < keep_frames and (n_color - 1) % frame_stride == 0:
                    pixels, encoding = decode_image(registry, m.type_name, m.data)
                    self.frames.append((m.log_time_ns, to_rgb8(pixels, encoding)))
        starts = [v[0] for v in self.arrivals.values() if v]
        self.t0_ns = min(starts) if starts else 0

    def seconds(self, stamps_ns) -> np.ndarray:
        return (np.asarray(stamps_ns, dtype=np.int64) - self.t0_ns) * 1e-9


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def joint_tracking_plot(series: EpisodeSeries, path: str | Path, hand_joints: int = 4) -> Path:
    """One panel per arm joint (+ the first hand joints): target before the gate, after it, and measured."""
    plt = _pyplot()
    d = series.description
    joints = list(d.arm_joints) + list(d.hand_joints[:hand_joints])
    cols = 4
    rows = int(np.ceil(len(joints) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), sharex=True, squeeze=False)
    styles = {"before": ("#f58518", "target before gate"), "after": ("#4c78a8", "after gate (driver)")}
    for ax, joint in zip(axes.flat, joints):
        for kind, (color, label) in styles.items():
            pts = [(t, v[joint]) for t, v in series.commands[kind] if joint in v]
            if pts:
                t, v = zip(*pts)
                ax.plot(series.seconds(t), v, color=color, linewidth=1.0, label=label,
                        drawstyle="steps-post" if kind == "before" else "default")
        pts = [(t, v[joint]) for t, v in series.measured if joint in v]
        if pts:
            t, v = zip(*pts)
            ax.plot(series.seconds(t), v, color="#54a24b", linewidth=1.4, label="measured")
        ax.set_title(joint, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(joints):]:
        ax.axis("off")
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    axes[0, 0].set_ylabel("rad")
    fig.suptitle("Joint targets (before / after the safety gate) vs measured")
    fig.tight_layout()
    return _save(fig, path)


def rates_plot(series: EpisodeSeries, path: str | Path, window_s: float = 0.5) -> Path:
    """Messages per second of every recorded stream over the episode (sliding ``window_s`` bins)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    end = max((max(v) for v in series.arrivals.values() if v), default=series.t0_ns)
    bins = np.arange(0.0, series.seconds([end])[0] + window_s, window_s)
    for topic, stamps in sorted(series.arrivals.items()):
        if len(stamps) < 3 or len(bins) < 2:
            continue
        counts, edges = np.histogram(series.seconds(stamps), bins=bins)
        rate = np.where(counts > 0, counts / window_s, np.nan)  # gaps show as gaps on the log axis
        ax.plot(edges[:-1] + window_s / 2, rate, label=f"{topic} ({len(stamps)})", linewidth=1.0)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("s")
    ax.set_ylabel("messages / s")
    ax.set_title("Loop and stream rates (as recorded)")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _save(fig, path)


def object_errors(series: EpisodeSeries, max_dt_s: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t_s, position error mm, rotation error deg) of each estimate against the ground truth nearest in stamp.
    Rotation error = angle of R_truth^T R_estimate, minimised over the object's symmetries is left to callers."""
    truth = series.poses["truth"]
    if not truth or not series.poses["estimate"]:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    t_truth = np.array([t for t, _ in truth], dtype=np.int64)
    out_t, out_p, out_r = [], [], []
    for t, T in series.poses["estimate"]:
        i = int(np.argmin(np.abs(t_truth - t)))
        if abs(int(t_truth[i]) - t) > max_dt_s * 1e9:
            continue
        G = truth[i][1]
        out_t.append(t)
        out_p.append(1000.0 * np.linalg.norm(T[:3, 3] - G[:3, 3]))
        cos = np.clip((np.trace(G[:3, :3].T @ T[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
        out_r.append(np.degrees(np.arccos(cos)))
    return series.seconds(out_t), np.array(out_p), np.array(out_r)


def object_error_plot(series: EpisodeSeries, path: str | Path) -> Path | None:
    """Object pose error vs the sim's ground truth over time (None when the episode has no pairs)."""
    t, pos_mm, rot_deg = object_errors(series)
    if not len(t):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(t, pos_mm, ".-", color="#4c78a8", linewidth=0.8, markersize=3, label="position (mm)")
    ax.set_xlabel("s")
    ax.set_ylabel("mm")
    ax2 = ax.twinx()
    ax2.plot(t, rot_deg, ".-", color="#e45756", linewidth=0.8, markersize=3, label="rotation (deg)")
    ax2.set_ylabel("deg")
    ax.set_title(f"Object pose error vs ground truth: median {np.median(pos_mm):.2f} mm, "
                 f"{np.median(rot_deg):.2f} deg ({len(t)} estimates)")
    fig.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def interventions_plot(history: Sequence[tuple[float, dict[str, int]]], path: str | Path) -> Path:
    """Cumulative safety monitor interventions by reason over time: ``history`` = (t_s, {reason: count})."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    reasons = sorted({r for _, counts in history for r in counts})
    t = np.array([h[0] for h in history])
    for reason in reasons:
        ax.step(t, [counts.get(reason, 0) for _, counts in history], where="post", label=reason)
    if not reasons:
        ax.text(0.5, 0.5, "no interventions", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("s")
    ax.set_ylabel("interventions (cumulative)")
    ax.set_title("Safety monitor interventions over time")
    if reasons:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def camera_video(series: EpisodeSeries, path: str | Path, fps: float = 10.0, max_width: int = 640) -> Path | None:
    """The kept colour frames as an H.264 MP4 (yuv420p, plays in browsers); None without frames."""
    if not series.frames:
        return None
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = series.frames[0][1].shape[:2]
    scale = min(1.0, max_width / w)
    out_w, out_h = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)), options={"crf": "28", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        for _, rgb in series.frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
                width=out_w, height=out_h, format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def report_plots(episode_dir: str | Path, out_dir: str | Path, description: RobotDescription,
                 safety_history: Sequence[tuple[float, dict[str, int]]] | None = None,
                 video_seconds: float = 10.0, video_fps: float = 10.0) -> dict[str, str]:
    """Every report figure for one episode into ``out_dir``; returns {name: path} of what was written."""
    out = Path(out_dir)
    first = EpisodeSeries(episode_dir, description)  # cheap pass without frames: count them for the stride
    n_color = len(first.arrivals.get(COLOR_TOPIC, [])) or len(first.arrivals.get(COLOR_TOPIC + "/compressed", []))
    stamps = first.arrivals.get(COLOR_TOPIC) or first.arrivals.get(COLOR_TOPIC + "/compressed") or []
    recorded_fps = (len(stamps) - 1) / max((stamps[-1] - stamps[0]) * 1e-9, 1e-9) if len(stamps) > 1 else video_fps
    stride = max(1, int(round(recorded_fps / video_fps)))
    keep = int(video_seconds * video_fps)
    series = EpisodeSeries(episode_dir, description, keep_frames=keep, frame_stride=stride) if n_color else first
    written = {
        "plot_joints": joint_tracking_plot(series, out / "plot_joints.png"),
        "plot_rates": rates_plot(series, out / "plot_rates.png"),
        "plot_object_error": object_error_plot(series, out / "plot_object_error.png"),
        "plot_interventions": interventions_plot(safety_history, out / "plot_interventions.png")
        if safety_history is not None else None,
        "camera_video": camera_video(series, out / "camera.mp4", fps=recorded_fps / stride) if n_color else None,
    }
    return {k: str(v) for k, v in written.items() if v is not None}


def demo_plots(episode_dir: Path, run_dir: Path, description: RobotDescription,
               safety_history: Sequence[tuple[float, dict[str, int]]], notes: list[str]) -> dict[str, str]:
    """The demo report's figures (dexstack-sim-demo); a failure becomes a note, never a lost report."""
    start = safety_history[0][0] if safety_history else 0.0
    history = [(t - start, counts) for t, counts in safety_history]
    try:
        return report_plots(episode_dir, run_dir, description, history)
    except Exception as exc:  # noqa: BLE001 (plots are an extra: the report itself must still be written)
        notes.append(f"plots failed: {type(exc).__name__}: {exc}")
        return {}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)
    return path
