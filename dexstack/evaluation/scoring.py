"""Scoring of one deployed episode from what the graph published (pure: no rclpy).

A deployed episode is recorded as time series: the simulator's ground-truth object pose
(``/dexstack/sim/object_pose_gt``, stamped with the sim cell's clock), the arrival times of the policy's commands,
of the perceived object poses and of the sim cell's physics time. The reference's timeline starts at the policy's
first command (t = 0 is when the policy began playing the reference), and success is
:class:`~dexstack.policies.tracking.env.TrackingTask`'s, sampled at the same control-period grid as
:func:`~dexstack.policies.tracking.env.evaluate`: in-process and deployed numbers are the same metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.tracking.env import TaskConfig, TrackingTask


@dataclass(frozen=True)
class ScoringConfig:
    """How an episode is scored beyond :class:`TaskConfig`'s success criteria."""

    control_period_s: float = 0.05  # grid on which the tracking error is sampled (the bundle's period)
    hold_s: float = 5.0  # after the reference's end, the object must stay near its end pose this long ...
    hold_tolerance_m: float = 0.03  # ... within this distance
    fresh_pose_max_age_s: float = 0.15  # a control step has a fresh object pose if one arrived at most this long ago
    task: TaskConfig = field(default_factory=TaskConfig)

    def __post_init__(self) -> None:
        for name in ("control_period_s", "hold_tolerance_m", "fresh_pose_max_age_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ScoringConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.hold_s < 0:
            raise ValueError(f"ScoringConfig.hold_s must be >= 0, got {self.hold_s}")


@dataclass
class EpisodeRecord:
    """What the probe saw during one episode. Times: ``*_t_s`` on one clock (the probe's ROS clock: wall time, or
    sim time with use_sim_time); ``*_wall_s`` on the probe's monotonic clock."""

    reference: str
    gt_t_s: list[float] = field(default_factory=list)  # ground-truth object pose stamps
    gt_pose: list[np.ndarray] = field(default_factory=list)  # (7,) xyz + quat xyzw
    command_t_s: list[float] = field(default_factory=list)  # arrival of each arm command (probe clock)
    command_wall_s: list[float] = field(default_factory=list)
    pose_t_s: list[float] = field(default_factory=list)  # arrival of each perceived object pose (probe clock)
    pose_fresh: list[bool] = field(default_factory=list)  # False: the estimator marked it stale (a prediction)
    physics_time_s: list[float] = field(default_factory=list)  # sim_cell's reported physics time ...
    physics_wall_s: list[float] = field(default_factory=list)  # ... and when it was reported
    notes: list[str] = field(default_factory=list)

    @property
    def start_t_s(self) -> float | None:
        """The reference's t = 0: the policy's first command."""
        return self.command_t_s[0] if self.command_t_s else None


@dataclass
class DeployedResult:
    reference: str
    success: bool
    max_position_error_m: float
    final_position_error_m: float
    final_rotation_error_rad: float
    held_after_end: bool | None  # None: not observed long enough after the end
    hold_max_error_m: float
    policy_period_ms_p99: float
    object_pose_coverage: float
    sim_realtime_factor: float
    commands: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def pose_at(times_s: np.ndarray, poses: np.ndarray, t_s: float) -> np.ndarray:
    """The latest ground-truth pose stamped at or before ``t_s`` (the first one before any)."""
    k = int(np.searchsorted(times_s, t_s, side="right")) - 1
    return poses[max(k, 0)]


def score_episode(record: EpisodeRecord, reference: ReferenceTrajectory, config: ScoringConfig | None = None
                  ) -> DeployedResult:
    c = config or ScoringConfig()
    t0 = record.start_t_s
    nan = float("nan")
    if t0 is None or not record.gt_t_s:
        why = "the policy sent no command" if t0 is None else "no ground-truth object pose received"
        return DeployedResult(reference.name, False, nan, nan, nan, None, nan, nan, 0.0, nan, 0, [why, *record.notes])
    gt_t = np.asarray(record.gt_t_s) - t0
    order = np.argsort(gt_t)
    gt_t, gt = gt_t[order], np.asarray(record.gt_pose)[order]
    notes = list(record.notes)

    # Tracking error on the control grid, as evaluate() samples it (after each control period, t = period .. end).
    task = TrackingTask(reference, c.task)
    duration = reference.duration_s
    grid = np.arange(c.control_period_s, duration + 1e-9, c.control_period_s)
    if gt_t[-1] < duration - c.control_period_s:
        notes.append(f"ground truth ends at t = {gt_t[-1]:.2f} s, before the reference's end ({duration:.2f} s)")
    for t in grid:
        task.step(reference.q_at(t), pose_at(gt_t, gt, t), float(t), np.zeros(1))
    success = task.success() and gt_t[-1] >= duration - c.control_period_s

    # Held after the end: within hold_tolerance of the reference's end pose for hold_s.
    end_pose = reference.object_pose_at(duration)
    after = (gt_t >= duration) & (gt_t <= duration + c.hold_s)
    held, hold_err = None, nan
    if np.any(after):
        hold_err = float(np.max(np.linalg.norm(gt[after, :3] - end_pose[:3], axis=1)))
        if gt_t[-1] >= duration + c.hold_s - 0.1:
            held = hold_err <= c.hold_tolerance_m
        else:
            notes.append(f"observed only {gt_t[-1] - duration:.1f} s of the {c.hold_s:.1f} s hold")

    # Control timing and object-pose coverage during the reference.
    cmd_t = np.asarray(record.command_t_s) - t0
    in_ref = cmd_t <= duration
    steps = cmd_t[in_ref]  # on the probe's clock: the simulation's with use_sim_time
    period_p99 = float(np.percentile(np.diff(steps), 99) * 1000.0) if steps.size > 2 else nan
    coverage = object_pose_coverage(cmd_t[in_ref] + t0, record.pose_t_s, record.pose_fresh, c.fresh_pose_max_age_s)
    rtf = realtime_factor(record.physics_time_s, record.physics_wall_s)
    return DeployedResult(reference.name, bool(success), task.max_pos_err, task.last_pos_err, task.last_rot_err, held,
                          hold_err, period_p99, coverage, rtf, int(in_ref.sum()), notes)


def object_pose_coverage(step_t_s, pose_t_s, pose_fresh, max_age_s: float) -> float:
    """Fraction of control steps at which the newest *fresh* object pose is at most ``max_age_s`` old."""
    steps = np.asarray(step_t_s, dtype=float)
    if steps.size == 0:
        return 0.0
    poses = np.asarray([t for t, ok in zip(pose_t_s, pose_fresh) if ok], dtype=float)
    if poses.size == 0:
        return 0.0
    poses.sort()
    k = np.searchsorted(poses, steps, side="right") - 1
    age = np.where(k >= 0, steps - poses[np.maximum(k, 0)], np.inf)
    return float(np.mean(age <= max_age_s))


def realtime_factor(physics_time_s, wall_s) -> float:
    """Physics seconds per wall second between the first and the last report."""
    if len(physics_time_s) < 2 or wall_s[-1] <= wall_s[0]:
        return float("nan")
    return float((physics_time_s[-1] - physics_time_s[0]) / (wall_s[-1] - wall_s[0]))


def summarize(inprocess: list[bool], deployed: list[DeployedResult], deployed_gt: list[DeployedResult]) -> dict:
    """The bench's headline keys (rates over references; timing/coverage from the perception runs)."""
    def rate(values) -> float | None:
        values = [bool(v) for v in values if v is not None]
        return round(float(np.mean(values)), 3) if values else None

    def stat(results, key, fn) -> float | None:
        values = [getattr(r, key) for r in results if np.isfinite(getattr(r, key))]
        return round(float(fn(values)), 3) if values else None

    both = deployed + deployed_gt
    return {
        "inprocess_success": rate(inprocess),
        "deployed_success": rate(r.success for r in deployed),
        "deployed_gt_pose_success": rate(r.success for r in deployed_gt),
        "n_references": max(len(inprocess), len(deployed), len(deployed_gt)),
        "sim_realtime_factor": stat(both, "sim_realtime_factor", np.min),
        "policy_period_ms_p99": stat(both, "policy_period_ms_p99", np.max),
        "object_pose_coverage": stat(deployed, "object_pose_coverage", np.mean),
        "held_after_end": rate(r.held_after_end for r in both),
    }


def intervention_note(safety_values: dict[str, str]) -> str | None:
    """The safety gate's intervention counts from ``safety_monitor``'s /diagnostics values (``count[<reason>]``) as one
    note, most frequent first (None: no intervention): what the gate changed during a deployed episode."""
    counts = {k[len("count["):-1]: int(v) for k, v in safety_values.items()
              if k.startswith("count[") and k.endswith("]")}
    if not counts:
        return None
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "gate interventions: " + "; ".join(f"{reason} x{n}" for reason, n in ranked)
