"""Recorder throughput: RGB-D at 30 Hz (640x480 rgb8 + 16UC1) and joint states at 500 Hz for --seconds (default 60).

Three processes over localhost DDS: a publisher (this file with --publisher), the recorder node, and this bench
(episode control through the recorder's services). Every published message carries its sequence number in
``header.frame_id``; the bench reads the episode back and prints ONE JSON line:

    {"image_hz": ..., "depth_hz": ..., "joint_hz": ..., "dropped": ..., ...}

``image_hz``/``joint_hz`` are recorded messages per second by their header stamps; ``dropped`` counts the
sequence numbers missing between the first and last recorded message of each topic (lost anywhere: DDS, the
recorder's queue, the disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dexstack.rosenv import force_localhost_dds  # noqa: E402

COLOR = "/camera/camera/color/image_raw"
DEPTH = "/camera/camera/aligned_depth_to_color/image_raw"
JOINTS = "/joint_states"
W, H = 640, 480


def publisher(seconds: float) -> None:
    """Publish RGB-D at 30 Hz and joint states at 500 Hz until killed or ``seconds`` pass."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image, JointState

    from dexstack.nodes import common
    from dexstack.robot import load_description

    rclpy.init()
    node = rclpy.create_node("bench_record_publisher")
    color_pub = node.create_publisher(Image, COLOR, common.SENSOR_QOS)
    depth_pub = node.create_publisher(Image, DEPTH, common.SENSOR_QOS)
    joint_pub = node.create_publisher(JointState, JOINTS, common.STATE_QOS)
    rng = np.random.default_rng(0)
    colors = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8).tobytes() for _ in range(2)]
    depths = [rng.integers(300, 2000, (H, W), dtype=np.uint16).tobytes() for _ in range(2)]
    joints = list(load_description("panda_allegro").joints)
    stop = threading.Event()

    def images() -> None:
        k = 0
        next_t = time.monotonic()
        while not stop.is_set():
            stamp = node.get_clock().now().to_msg()
            color = Image(height=H, width=W, encoding="rgb8", step=3 * W, data=colors[k % 2])
            depth = Image(height=H, width=W, encoding="16UC1", step=2 * W, data=depths[k % 2])
            for img in (color, depth):
                img.header.stamp, img.header.frame_id = stamp, str(k)
            color_pub.publish(color)
            depth_pub.publish(depth)
            k += 1
            next_t += 1 / 30
            stop.wait(max(0.0, next_t - time.monotonic()))

    def states() -> None:
        k = 0
        next_t = time.monotonic()
        q = [0.0] * len(joints)
        while not stop.is_set():
            msg = JointState(name=joints, position=q, velocity=q, effort=q)
            msg.header.stamp, msg.header.frame_id = node.get_clock().now().to_msg(), str(k)
            joint_pub.publish(msg)
            k += 1
            next_t += 1 / 500
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    threads = [threading.Thread(target=f, daemon=True) for f in (images, states)]
    for t in threads:
        t.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(seconds)
    except KeyboardInterrupt:
        pass
    stop.set()
    for t in threads:
        t.join(timeout=2)
    node.destroy_node()
    rclpy.shutdown()


def read_episode(path: Path) -> dict:
    from mcap.reader import make_reader
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, JointState

    seqs: dict[str, list[tuple[int, int]]] = {COLOR: [], DEPTH: [], JOINTS: []}
    cls = {COLOR: Image, DEPTH: Image, JOINTS: JointState}
    with open(next(path.glob("*.mcap")), "rb") as f:
        for _, channel, message in make_reader(f).iter_messages(topics=list(seqs)):
            msg = deserialize_message(message.data, cls[channel.topic])
            seqs[channel.topic].append((int(msg.header.frame_id), message.publish_time))
    out = {}
    for topic, items in seqs.items():
        items.sort()
        n = len(items)
        span_s = (items[-1][1] - items[0][1]) * 1e-9 if n > 1 else 0.0
        missing = (items[-1][0] - items[0][0] + 1 - n) if n else 0
        out[topic] = {"hz": (n - 1) / span_s if span_s > 0 else 0.0, "count": n, "missing": missing,
                      "span_s": span_s}
    return out


def run(seconds: float) -> dict:
    force_localhost_dds()
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from std_srvs.srv import Trigger

    from dexstack.nodes.common import BackgroundSpin

    work = Path(tempfile.mkdtemp(prefix="bench_record_"))
    out = work / "episodes"
    logs = {name: open(work / f"{name}.log", "w") for name in ("publisher", "recorder")}  # noqa: SIM115
    procs = {
        "publisher": subprocess.Popen([sys.executable, __file__, "--publisher", "--seconds", str(seconds + 30)],
                                      env=os.environ, stdout=logs["publisher"], stderr=subprocess.STDOUT),
        "recorder": subprocess.Popen([sys.executable, "-m", "dexstack.nodes.recorder", "--ros-args",
                                      "-p", f"output_dir:={out}", "-p", f"topics:=['{COLOR}','{DEPTH}','{JOINTS}']"],
                                     env=os.environ, stdout=logs["recorder"], stderr=subprocess.STDOUT),
    }
    rclpy.init()
    node = rclpy.create_node("bench_record")
    diag: dict[str, str] = {}

    def on_diag(msg):
        for status in msg.status:
            if status.name == "recorder":
                diag.clear()
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    spinner = BackgroundSpin(node)

    def call(name: str) -> Trigger.Response:
        client = node.create_client(Trigger, f"/recorder/{name}")
        assert client.wait_for_service(timeout_sec=30.0), f"/recorder/{name} not available"
        for _ in range(3):
            future = client.call_async(Trigger.Request())
            deadline = time.monotonic() + 20.0
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        raise RuntimeError(f"/recorder/{name}: no response")

    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not all(
                t in diag.get("subscribed_topics", "") for t in (COLOR, DEPTH, JOINTS)):
            time.sleep(0.1)
        time.sleep(1.0)
        started = call("start")
        if not started.success:
            raise RuntimeError(started.message)
        t_end = time.monotonic() + seconds
        recorder_cpu0 = _cpu_seconds(procs["recorder"].pid)
        t0 = time.monotonic()
        while time.monotonic() < t_end:
            time.sleep(0.2)
        cpu_s = _cpu_seconds(procs["recorder"].pid) - recorder_cpu0
        wall_s = time.monotonic() - t0
        queue_drops = int(diag.get("dropped", 0))
        stopped = call("stop")
        if not stopped.success:
            raise RuntimeError(stopped.message)
        episode = out / "episode_000000"
        stats = read_episode(episode)
        size = sum(p.stat().st_size for p in episode.iterdir())
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        spinner.close()
    result = {
        "image_hz": round(stats[COLOR]["hz"], 2),
        "depth_hz": round(stats[DEPTH]["hz"], 2),
        "joint_hz": round(stats[JOINTS]["hz"], 1),
        "dropped": int(sum(s["missing"] for s in stats.values())),
        "dropped_by_topic": {"color": stats[COLOR]["missing"], "depth": stats[DEPTH]["missing"],
                             "joint_states": stats[JOINTS]["missing"]},
        "recorder_queue_dropped": queue_drops,
        "seconds": round(stats[JOINTS]["span_s"], 1),
        "write_mb_s": round(size / 2**20 / max(1e-9, stats[JOINTS]["span_s"]), 1),
        "recorder_cpu_percent": round(100.0 * cpu_s / wall_s, 1) if cpu_s >= 0 else None,
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return -1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="recording length (s)")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        force_localhost_dds()
        publisher(args.seconds)
        return
    print(json.dumps(run(args.seconds)))


if __name__ == "__main__":
    main()
