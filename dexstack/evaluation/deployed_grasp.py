"""Grasping on the launched graph (issue 12): one ``sim_grasp`` graph per trial, scored as ``bench/grasp.py`` scores.

The graph is ``launch/sim_grasp.launch.xml`` as a user starts it (``sim_cell``, ``grasp_target``, ``object_pose``,
``safety_monitor``, ``policy``: separate processes over real DDS, the camera rendering and perception on), the object
placed by the launch file's ``object_start`` argument. ``grasp_target`` fits the object in the camera's frame and
retargets the human grasp; the policy node takes the target and runs the grasp episode (reach -> approach -> close
-> lift -> hold, :class:`~dexstack.grasp.episode.GraspPhases`) through the safety monitor.

An :class:`~dexstack.nodes.episode_probe.EpisodeProbe` in this process records the simulator's object pose and the
policy's commands, and a :class:`JointTrace` the joint states (the palm's pose for the slip). The episode's clock
starts at the policy's first arm command (the reach's start). Success as in the in-process benchmark
(:meth:`dexstack.grasp.baseline.OpenLoopGrasp.run`): the object ends >= ``success_rise_m`` above where it rested
before the first command, and its position in the palm frame moves < ``max_slip_m`` over the hold (from the lift's
end to the episode's end). The caller must have forced localhost DDS before importing rclpy
(:func:`dexstack.rosenv.force_localhost_dds`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dexstack.evaluation.scoring import pose_at
from dexstack.grasp.baseline import BaselineConfig
from dexstack.grasp.episode import GraspPhases
from dexstack.perception.geometry import pose_error
from dexstack.retarget.functional import GraspTarget
from dexstack.robot.description import RobotDescription
from dexstack.transforms import invert_transform, pose_to_transform


@dataclass(frozen=True)
class GraspScoring:
    # the in-process benchmark's thresholds (its open-loop baseline's), so both paths score alike
    success_rise_m: float = BaselineConfig.success_rise_m
    max_slip_m: float = BaselineConfig.max_slip_m
    phases: GraspPhases = field(default_factory=GraspPhases)

    def __post_init__(self) -> None:
        if not (self.success_rise_m > 0 and self.max_slip_m > 0):
            raise ValueError("GraspScoring.success_rise_m and max_slip_m must be positive")


@dataclass
class GraspScore:
    success: bool
    rise_m: float
    slip_m: float
    reason: str  # why it failed ('' on success)


def _covers(times_s: np.ndarray, t0_s: float, t1_s: float) -> bool:
    """Samples at or before ``t0_s`` and up to ``t1_s`` (what :func:`pose_at` then reads is not extrapolated)."""
    return times_s.size > 0 and times_s[0] <= t0_s and times_s[-1] >= t1_s


def score_grasp(gt_t_s, gt_pose, joint_t_s, joint_q_rad, start_t_s: float, palm_pose, scoring: GraspScoring
                ) -> GraspScore:
    """Score one episode from the simulator's object poses (``gt_pose`` (K, 7) xyz + quat xyzw at ``gt_t_s``),
    the measured joints (``joint_q_rad`` (M, n) at ``joint_t_s``), the reach's start ``start_t_s`` and
    ``palm_pose(q) -> T_base_palm``."""
    gt_t, gt = np.asarray(gt_t_s, dtype=float), np.asarray(gt_pose, dtype=float)
    jt, jq = np.asarray(joint_t_s, dtype=float), np.asarray(joint_q_rad, dtype=float)
    ph = scoring.phases
    t_lift_end, t_end = start_t_s + ph.t_hold_s, start_t_s + ph.duration_s
    if not _covers(gt_t, start_t_s, t_end):
        return GraspScore(False, float("nan"), float("nan"), "the object's pose was not recorded over the episode")
    rise = float(pose_at(gt_t, gt, t_end)[2] - pose_at(gt_t, gt, start_t_s)[2])
    if not _covers(jt, t_lift_end, t_end):
        return GraspScore(False, rise, float("nan"), "no joint state over the hold")

    def in_palm(t_s: float) -> np.ndarray:
        pose = pose_at(gt_t, gt, t_s)
        return (invert_transform(palm_pose(pose_at(jt, jq, t_s))) @ pose_to_transform(pose[:3], pose[3:]))[:3, 3]

    slip = float(np.linalg.norm(in_palm(t_end) - in_palm(t_lift_end)))
    reasons = []
    if rise < scoring.success_rise_m:
        reasons.append(f"rose {1000 * rise:.0f} mm (< {1000 * scoring.success_rise_m:.0f})")
    if slip >= scoring.max_slip_m:
        reasons.append(f"slipped {1000 * slip:.0f} mm in the hand (>= {1000 * scoring.max_slip_m:.0f})")
    return GraspScore(not reasons, rise, slip, "; ".join(reasons))


class JointTrace:
    """The joint states a node receives, in ``description.joints`` order, on that node's clock."""

    def __init__(self, node, description: RobotDescription, topic: str = "/joint_states") -> None:
        from sensor_msgs.msg import JointState  # noqa: PLC0415

        from dexstack.nodes import common  # noqa: PLC0415

        self._node, self._joints = node, list(description.joints)
        self._lock = threading.Lock()
        self.t_s: list[float] = []
        self.q_rad: list[np.ndarray] = []
        node.create_subscription(JointState, topic, self._on_state, common.STATE_QOS)

    def clear(self) -> None:
        with self._lock:
            self.t_s, self.q_rad = [], []

    def _on_state(self, msg) -> None:
        names = list(msg.name)
        if not set(self._joints) <= set(names):
            return
        q = np.array([msg.position[names.index(j)] for j in self._joints])
        with self._lock:
            self.t_s.append(self._node.get_clock().now().nanoseconds * 1e-9)
            self.q_rad.append(q)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return np.array(self.t_s), np.array(self.q_rad)


class LatestText:
    """The last std_msgs/String a latched topic gave (the grasp target's JSON): what the graph's policy was told."""

    def __init__(self, node, topic: str) -> None:
        from std_msgs.msg import String  # noqa: PLC0415

        from dexstack.nodes import common  # noqa: PLC0415

        self.text: str | None = None
        node.create_subscription(String, topic, self._on_text, common.LATCHED_QOS)

    def clear(self) -> None:
        self.text = None

    def _on_text(self, msg) -> None:
        self.text = msg.data


def target_difference(graph_target: GraspTarget, bench_target: GraspTarget) -> dict:
    """How far the graph's grasp target is from ``bench/grasp.py``'s for the same human grasp (both in the object
    frame): palm position (mm) and rotation (deg), the largest hand-joint difference (rad). All zero when the graph
    retargets what the bench (and the policy's training bank) retargets."""
    palm_mm, palm_deg = pose_error(graph_target.T_object_palm, bench_target.T_object_palm)
    return {"palm_mm": round(palm_mm, 3), "palm_deg": round(palm_deg, 3),
            "hand_rad": round(float(np.abs(graph_target.q_hand_rad - bench_target.q_hand_rad).max()), 4)}


def _refusal(graph) -> str | None:
    """The policy node's refusal of the grasp target (e.g. an unreachable pose), from its log: the policy then
    never commands, and waiting out the start-up timeout would learn nothing more."""
    for node in graph.nodes:
        if node.name == "policy" and node.log_path is not None and node.log_path.exists():
            for line in node.log_path.read_text(errors="replace").splitlines():
                if "grasp target refused" in line:
                    return "grasp target refused: " + line.split("refused: ")[-1].strip()[:200]
    return None


def run_grasp_trial(probe, joints: JointTrace, launch_args: dict[str, str], scoring: GraspScoring,
                    palm_pose, log_dir: Path, startup_timeout_s: float = 300.0, gt_object_pose: bool = False,
                    target: LatestText | None = None) -> dict:
    """One trial in a fresh ``sim_grasp`` graph; returns its score and what the nodes said. ``gt_object_pose``: the
    policy node is fed the simulator's object pose (a remap; perception still runs and still makes the target),
    which separates the tracked pose from the rest of the graph.

    Beside the node logs, ``log_dir`` gets the trial's record, to compare with an in-process run of the same trial:
    ``trace.npz`` (``joint_t_s``, ``joint_q_rad`` in the description's joint order, ``object_t_s``,
    ``object_pose`` (the simulator's, xyz + quaternion xyzw, base frame), ``command_t_s``, ``start_t_s``; the
    probe's clock) and, with ``target``, ``grasp_target.json`` (the target the policy was sent)."""
    from dexstack.evaluation.deployed import OBJECT_GT_TOPIC, OBJECT_POSE_TOPIC  # noqa: PLC0415
    from dexstack.evaluation.scoring import intervention_note  # noqa: PLC0415
    from dexstack.launch.runner import LaunchedGraph  # noqa: PLC0415
    from dexstack.launch.xml import parse_launch_file  # noqa: PLC0415

    description = parse_launch_file("sim_grasp", launch_args)
    if gt_object_pose:
        for node in description.nodes:
            if node.executable == "policy":
                node.remaps.append((OBJECT_POSE_TOPIC, OBJECT_GT_TOPIC))
    probe.start(launch_args.get("object", ""))
    joints.clear()
    if target is not None:
        target.clear()
    notes: list[str] = []
    run_for_s = scoring.phases.duration_s + 0.5
    wall0 = time.monotonic()
    with LaunchedGraph(description, log_dir=log_dir) as graph:
        deadline = time.monotonic() + startup_timeout_s
        refused = None
        while (probe.record.start_t_s is None and time.monotonic() < deadline and not graph.failed()
               and refused is None):
            time.sleep(0.25)
            refused = _refusal(graph)
        record = probe.snapshot()
        start = record.start_t_s
        startup_s = time.monotonic() - wall0
        if start is None:
            failed = graph.failed()
            notes.append(refused if refused else f"nodes exited: {failed} (logs in {log_dir})" if failed else
                         f"no policy command within {startup_timeout_s:.0f} s")
        else:
            wall_deadline = time.monotonic() + 10.0 * run_for_s + 60.0  # sim time: a slow simulation gets its time
            while probe.now_s() - start < run_for_s and time.monotonic() < wall_deadline and not graph.failed():
                time.sleep(0.05)
            record = probe.snapshot()
            if graph.failed():
                notes.append(f"nodes exited during the episode: {graph.failed()}")
        note = intervention_note(dict(probe.diagnostics.get("safety_monitor", {})))
        if note is not None:
            notes.append(note)
        messages = dict(probe.diagnostic_messages)
    for name in ("grasp_target", "policy", "object_pose"):
        if name in messages:
            notes.append(f"{name}: {messages[name][:200]}")
    jt, jq = joints.snapshot()
    log_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(log_dir / "trace.npz", joint_t_s=jt, joint_q_rad=jq, object_t_s=np.asarray(record.gt_t_s),
                        object_pose=np.asarray(record.gt_pose), command_t_s=np.asarray(record.command_t_s),
                        start_t_s=np.nan if start is None else start)
    if target is not None and target.text is not None:
        (log_dir / "grasp_target.json").write_text(target.text)
    if start is None:
        score = GraspScore(False, float("nan"), float("nan"), refused or "the policy never commanded")
    else:
        score = score_grasp(record.gt_t_s, record.gt_pose, jt, jq, start, palm_pose, scoring)
    return {"success": score.success, "rise_m": round(score.rise_m, 4), "slip_m": round(score.slip_m, 4),
            "reason": score.reason, "startup_s": round(startup_s, 1), "commands": len(record.command_t_s),
            "notes": notes + record.notes}
