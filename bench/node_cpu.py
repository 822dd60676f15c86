"""CPU budget of a launched graph: CPU seconds per wall second of each node process (and its busiest threads),
measured from /proc over a window after a warm-up, optionally with a py-spy profile of each node.

    ROS_DOMAIN_ID=17 .venv/bin/python bench/node_cpu.py sim_policy policy:=track_cube --warmup-s 25 --window-s 20
    ... --py-spy /tmp/prof    # also: one py-spy 'raw' (collapsed stacks) profile per node, top functions printed

Prints one JSON line: {"launch", "arguments", "window_s", "load_1min" (before/after), "nodes": {name: {"cpu_per_wall",
"threads": [[name, cpu_per_wall], ...], "child_processes": [[name, cpu_per_wall], ...]}}, "total_cpu_per_wall"} (a
node's cpu_per_wall includes its child processes, e.g. sim_cell's render process). CPU time is independent of the
load (a loaded machine stretches wall time, not the CPU a tick costs), so these figures compare across runs; say the
load anyway.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dexstack.launch.runner import LaunchedGraph
from dexstack.launch.xml import parse_launch_file
from dexstack.rosenv import force_localhost_dds

# Work done by the graph, counted by a probe (per-unit CPU figures stay comparable when a loaded machine starves a
# node): messages per topic, and the simulated time from /clock.
COUNTED = {"camera_frames": ("camera/camera/aligned_depth_to_color/camera_info", "sensor_msgs.msg.CameraInfo"),
           "gate_outputs": ("/arm_controller/joint_trajectory", "trajectory_msgs.msg.JointTrajectory"),
           "policy_commands": ("dexstack/arm/command", "trajectory_msgs.msg.JointTrajectory"),
           "object_poses": ("dexstack/object_pose_with_covariance", "geometry_msgs.msg.PoseWithCovarianceStamped")}
# CPU-ms of a node per unit of its work (gate outputs: ticks with a live arm command; the gate ticks at 100 Hz
# whether or not one is live)
PER_UNIT = {"sim_cell": ("sim_s", "cpu_ms_per_sim_s"), "safety_monitor": ("gate_outputs", "cpu_ms_per_gate_output"),
            "object_pose": ("camera_frames", "cpu_ms_per_camera_frame"),
            "policy": ("policy_commands", "cpu_ms_per_policy_command")}


class Probe:
    """Counts messages on COUNTED topics and keeps the latest /clock."""

    def __init__(self) -> None:
        import importlib

        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from dexstack.nodes import common

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("node_cpu_probe", context=self.context)
        self.counts = dict.fromkeys(COUNTED, 0)
        self.clock_s = 0.0
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        for key, (topic, type_name) in COUNTED.items():
            module, _, cls = type_name.rpartition(".")
            self.node.create_subscription(getattr(importlib.import_module(module), cls), topic,
                                          lambda _msg, key=key: self._count(key), qos)
        self.node.create_subscription(Clock, "/clock", self._on_clock, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.spin = common.BackgroundSpin(self.node)

    def _count(self, key: str) -> None:
        self.counts[key] += 1

    def _on_clock(self, msg) -> None:
        self.clock_s = msg.clock.sec + msg.clock.nanosec * 1e-9

    def snapshot(self) -> dict[str, float]:
        return {**self.counts, "sim_s": self.clock_s}

    def close(self) -> None:
        self.spin.close()

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(stat_path: Path) -> int | None:
    try:
        text = stat_path.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of proc(5))


def _thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks per thread, keyed 'comm/tid' (Python threads are all named after the interpreter here)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        ticks = _cpu_ticks(task / "stat")
        try:
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        if ticks is not None:
            out[f"{comm}/{task.name}"] = ticks
    return out


def _descendants(pid: int) -> dict[int, str]:
    """Child processes of ``pid``, recursively, with a short name (e.g. sim_cell's render process)."""
    out: dict[int, str] = {}
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                module = argv[argv.index(b"-m") + 1].decode() if b"-m" in argv else Path(argv[0].decode()).name
                out[child] = module.rsplit(".", 1)[-1]
                stack.append(child)
    return out


def _process_ticks(pid: int) -> tuple[int | None, dict[str, int], dict[int, tuple[str, int]]]:
    """(the process's CPU ticks, per thread, per descendant process (name, ticks))."""
    children = {}
    for child, name in _descendants(pid).items():
        ticks = _cpu_ticks(Path(f"/proc/{child}/stat"))
        if ticks is not None:
            children[child] = (name, ticks)
    return _cpu_ticks(Path(f"/proc/{pid}/stat")), _thread_ticks(pid), children


def _summarize_raw(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Fraction of samples in which each function appears (inclusive), from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            inclusive[frame] += n
    return [(frame, round(n / total, 3)) for frame, n in inclusive.most_common(top)] if total else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("launch_file")
    parser.add_argument("arguments", nargs="*", help="launch arguments name:=value")
    parser.add_argument("--warmup-s", type=float, default=25.0, help="after start, before measuring (bundle loads, "
                        "perception locks on)")
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--py-spy", type=Path, default=None, help="folder for one py-spy profile per node")
    parser.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    arguments = dict(a.split(":=", 1) for a in args.arguments)
    description = parse_launch_file(args.launch_file, arguments)
    force_localhost_dds(os.environ)
    probe = Probe()
    load_before = os.getloadavg()[0]
    result: dict = {"launch": args.launch_file, "arguments": arguments, "window_s": args.window_s}
    with LaunchedGraph(description, log_dir=args.log_dir) as graph:
        time.sleep(args.warmup_s)
        if graph.failed():
            print(f"nodes exited: {graph.failed()}", file=sys.stderr)
            return 1
        pids = {n.name: n.process.pid for n in graph.nodes}
        deadline = time.monotonic() + 5.0
        while probe.clock_s == 0.0 and time.monotonic() < deadline:  # a sim_s figure needs a first /clock
            time.sleep(0.05)
        spies = []
        if args.py_spy is not None:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            if not Path(py_spy).exists():
                parser.error("--py-spy needs py-spy (not in requirements/: pip install py-spy), none found")
            args.py_spy.mkdir(parents=True, exist_ok=True)
            for name, pid in pids.items():
                spies.append((name, args.py_spy / f"{name}.txt", subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "--duration", str(int(args.window_s)), "--rate",
                     str(args.py_spy_rate), "--format", "raw", "--threads", "--nonblocking", "--output",
                     str(args.py_spy / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        t0 = time.monotonic()
        before = {name: _process_ticks(pid) for name, pid in pids.items()}
        work0 = probe.snapshot()
        time.sleep(args.window_s)
        after = {name: _process_ticks(pid) for name, pid in pids.items()}
        work1 = probe.snapshot()
        wall = time.monotonic() - t0
        for _name, _path, spy in spies:
            spy.wait(timeout=args.window_s + 30)
    probe.close()
    work = {k: round(work1[k] - work0[k], 3) for k in work0}
    nodes = {}
    for name in pids:
        (p0, t0s, c0), (p1, t1s, c1) = before[name], after[name]
        threads = sorted(((k, (t1s[k] - t0s.get(k, 0)) / CLK_TCK / wall) for k in t1s), key=lambda kv: -kv[1])
        # a node's child processes (sim_cell's renderer) are its CPU too: counted in, and listed
        children = {c: (c1[c][0], c1[c][1] - c0[c][1]) for c in c1 if c in c0}
        ticks = (p1 - p0) + sum(t for _, t in children.values())
        nodes[name] = {"cpu_per_wall": round(ticks / CLK_TCK / wall, 3),
                       "threads": [[k, round(v, 3)] for k, v in threads[:4] if v >= 0.01]}
        if children:
            nodes[name]["child_processes"] = [[n, round(t / CLK_TCK / wall, 3)] for n, t in children.values()]
        if name in PER_UNIT and work[PER_UNIT[name][0]] > 0:
            unit, key = PER_UNIT[name]
            nodes[name][key] = round(1000.0 * ticks / CLK_TCK / work[unit], 2)
    result.update(load_1min_before=round(load_before, 2), load_1min_after=round(os.getloadavg()[0], 2),
                  work=work, work_per_wall_s={k: round(v / wall, 2) for k, v in work.items()},
                  nodes=nodes, total_cpu_per_wall=round(sum(n["cpu_per_wall"] for n in nodes.values()), 3))
    for name, path, _spy in spies:
        if path.is_file():
            print(f"--- {name} (py-spy, fraction of samples, inclusive)", file=sys.stderr)
            for frame, share in _summarize_raw(path):
                print(f"  {share:6.3f}  {frame}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
