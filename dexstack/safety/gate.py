"""SafetyGate: turns command-source inputs into limit-respecting driver setpoints, one control tick at a time.

Every tick (``rate_hz``), for each part (arm, hand) with a live command:
1. sample the input reference (arm trajectories are interpolated like a joint_trajectory_controller; hand commands
   are position steps), clamp it into the joint limits shrunk by a margin;
2. move the output toward it through a jerk-limited online filter (ruckig) with the description's velocity limits
   (scaled) and configured acceleration/jerk limits, starting from the measured state (re-seeded from it when the
   robot falls behind);
3. check the palm and fingertips (pinocchio FK of the output) against the workspace box, then the setpoint's
   self-collision and collision with the table (coal on a capsule skeleton, ``dexstack/safety/collision.py``);
   clip the step before the boundary or hold.

Inputs are validated (names, lengths, NaN/inf) and rejected whole; so are absurd targets: further than
``max_outside_limits_rad`` outside the joint limits (a slightly-out target is clamped, a 50 rad one is a bug), or a
step further than ``arm_max_step_rad`` / ``hand_max_step_rad`` from the measured state (or, within a trajectory,
from its previous point). Watchdogs: a part whose command stream is stale
stops (holds its last output); a stale ``/joint_states`` stops everything. The e-stop latches: nothing passes until
a reset, which needs fresh state. Every intervention is counted by reason.

The rules themselves are :class:`~dexstack.safety.gate_batch.GateBatch` (written once, for N robots at once: the
training envs run it batched); SafetyGate is a GateBatch of one robot plus the validation of ROS inputs and the
refusal messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dexstack.control.commands import CommandError, validate_positions, validate_trajectory
from dexstack.robot.description import RobotDescription
from dexstack.safety.collision import CollisionConfig, CollisionModel
from dexstack.safety.gate_batch import (
    REFUSAL_REASONS,
    REFUSED_ESTOP,
    REFUSED_JUMP,
    REFUSED_NO_STATE,
    REFUSED_OUTSIDE,
    TAKEN,
    GateBatch,
    PartFilters,
)

WORKSPACE_MODES = ("clip", "reject")


@dataclass
class SafetyConfig:
    rate_hz: float = 100.0
    command_timeout_s: float = 0.1
    state_timeout_s: float = 0.5
    position_margin_rad: float = 0.02
    velocity_scale: float = 0.5
    arm_max_acceleration_rad_s2: float = 4.0
    arm_max_jerk_rad_s3: float = 40.0
    hand_max_acceleration_rad_s2: float = 40.0
    hand_max_jerk_rad_s3: float = 800.0
    max_tracking_error_rad: float = 0.3
    workspace_min_m: tuple[float, float, float] = (-0.2, -0.7, -0.05)  # reach box; the table is below
    workspace_max_m: tuple[float, float, float] = (0.95, 0.7, 1.2)
    workspace_mode: str = "clip"
    max_outside_limits_rad: float = 0.3  # targets further outside the limits are refused, not clamped
    arm_max_step_rad: float = 3.0  # refuse an arm target further than this from the measured state (per joint)
    hand_max_step_rad: float = 2.5
    table_top_z_m: float = 0.0  # the table: no link below table_top_z_m - table_penetration_m (see collision.py)
    table_penetration_m: float = 0.015
    finger_table_penetration_m: float = 0.03  # finger links pressing on the table (see collision.py)
    arm_link_radius_m: float = 0.055  # capsule skeleton of the robot for the collision checks
    hand_link_radius_m: float = 0.012

    def collision_config(self) -> CollisionConfig:
        return CollisionConfig(table_top_z_m=self.table_top_z_m, table_penetration_m=self.table_penetration_m,
                               finger_table_penetration_m=self.finger_table_penetration_m,
                               arm_link_radius_m=self.arm_link_radius_m, hand_link_radius_m=self.hand_link_radius_m)

    def errors(self) -> list[str]:
        """Why this configuration is unusable (empty if it is fine)."""
        out = []
        positive = ("rate_hz", "command_timeout_s", "state_timeout_s", "arm_max_acceleration_rad_s2",
                    "arm_max_jerk_rad_s3", "hand_max_acceleration_rad_s2", "hand_max_jerk_rad_s3",
                    "max_tracking_error_rad")
        out += [f"{name} must be > 0" for name in positive if not getattr(self, name) > 0]
        if not 0 < self.velocity_scale <= 1:
            out.append("velocity_scale must be in (0, 1]")
        if self.position_margin_rad < 0:
            out.append("position_margin_rad must be >= 0")
        if len(self.workspace_min_m) != 3 or len(self.workspace_max_m) != 3:
            out.append("workspace_min_m and workspace_max_m need 3 values (x, y, z)")
        elif not all(lo < hi for lo, hi in zip(self.workspace_min_m, self.workspace_max_m)):
            out.append("workspace_min_m must be below workspace_max_m on every axis")
        if self.workspace_mode not in WORKSPACE_MODES:
            out.append(f"workspace_mode must be one of {WORKSPACE_MODES}")
        out += [f"{name} must be > 0" for name in ("max_outside_limits_rad", "arm_max_step_rad", "hand_max_step_rad")
                if not getattr(self, name) > 0]
        return out + self.collision_config().errors()


@dataclass
class GateOutput:
    """What to send to the drivers this tick (None: send nothing for that part)."""

    arm_rad: np.ndarray | None = None
    hand_rad: np.ndarray | None = None
    interventions: list[str] = field(default_factory=list)
    horizon_s: float = 0.0  # time the filter advanced this tick: the driver should take this long to get there


class SafetyGate:
    """The pure safety logic for one robot: message validation and refusal messages around the rules of
    :class:`~.gate_batch.GateBatch` (one row). Times are seconds on one monotonic clock supplied by the caller."""

    def __init__(self, description: RobotDescription, config: SafetyConfig):
        self._batch = GateBatch(description, config, 1)
        self._row = np.zeros(1, dtype=int)
        self.description = description
        self.kinematics = self._batch.kinematics
        self.interventions = self._batch.counters[0]
        self.frames = self._batch.frames
        self._n_arm = len(description.arm_joints)

    @property
    def config(self) -> SafetyConfig:
        return self._batch.config

    @property
    def collision(self) -> CollisionModel:
        return self._batch.collision

    @property
    def estopped(self) -> bool:
        return bool(self._batch.estopped[0])

    @property
    def estop_reason(self) -> str:
        return self._batch.estop_reason[0]

    @property
    def last_collisions(self) -> list[str]:
        """Pairs found by the last collision intervention."""
        return self._batch.last_collisions[0]

    @property
    def _arm(self) -> PartFilters:
        return self._batch.arm

    @property
    def _hand(self) -> PartFilters:
        return self._batch.hand

    def reconfigure(self, config: SafetyConfig) -> None:
        """Apply new limits; filters restart from the measured state (raises ValueError on a bad config)."""
        self._batch.reconfigure(config)

    def _intervene(self, reason: str, out: GateOutput | None = None) -> None:
        self._batch.intervene(0, reason, None if out is None else [out.interventions])

    # ------------------------------------------------------------------ inputs
    def _refuse(self, name: str, verdict: int, points: np.ndarray, joints: slice, max_step_rad: float) -> None:
        """Raise CommandError saying why ``points`` were refused (the verdict of GateBatch's rules)."""
        if verdict == TAKEN:
            return
        lower, upper = self._batch.lower[joints], self._batch.upper[joints]
        names = self.description.joints[joints]
        if verdict == REFUSED_OUTSIDE:
            outside = np.maximum(lower - points, 0.0) + np.maximum(points - upper, 0.0)
            k, j = np.unravel_index(np.argmax(outside), outside.shape)
            raise CommandError(f"{names[j]} target {points[k, j]:.3f} rad is {outside[k, j]:.3f} rad outside its "
                               f"limits [{lower[j]:.3f}, {upper[j]:.3f}] (more than max_outside_limits_rad = "
                               f"{self.config.max_outside_limits_rad}): refused, not clamped")
        if verdict == REFUSED_JUMP:
            step = np.abs(np.diff(points, axis=0, prepend=self._batch.q_meas[0][None, joints]))
            k, j = np.unravel_index(np.argmax(step), step.shape)
            origin = "the measured state" if k == 0 else f"point {k - 1}"
            raise CommandError(f"{names[j]} target {points[k, j]:.3f} rad is {step[k, j]:.3f} rad from {origin} "
                               f"(more than {name}_max_step_rad = {max_step_rad}): refused")
        if verdict == REFUSED_NO_STATE:
            raise CommandError("no /joint_states received yet")
        raise CommandError("e-stop is latched: reset first")

    def update_state(self, q_rad: Sequence[float], now_s: float) -> None:
        """Measured joint positions in description order."""
        q = np.asarray(q_rad, dtype=float)
        if q.shape != (len(self.description.joints),):
            self._intervene("state: malformed joint state ignored")
            return
        self._batch.update_state(self._row, q[None], np.array([now_s]))

    def _refuse_estopped(self) -> None:
        if self.estopped:
            self._intervene(REFUSAL_REASONS[REFUSED_ESTOP])
            raise CommandError("e-stop is latched: reset first")

    def arm_command(self, joint_names: Sequence[str], positions: Sequence[Sequence[float]],
                    times_from_start_s: Sequence[float], now_s: float) -> None:
        """A JointTrajectory input. Raises CommandError (input ignored, robot holds) when malformed or stopped."""
        self._refuse_estopped()
        try:
            times, q = validate_trajectory(joint_names, positions, times_from_start_s, self.description.arm_joints)
        except CommandError as exc:
            self._intervene(f"arm: {exc}")
            raise
        points = np.asarray(q, dtype=float).reshape(len(times), self._n_arm)
        verdict = self._batch.arm_command(self._row, times, points[None], np.array([now_s]))[0]
        self._refuse("arm", verdict, points, slice(0, self._n_arm), self.config.arm_max_step_rad)

    def hand_command(self, values: Sequence[float], now_s: float) -> None:
        self._refuse_estopped()
        try:
            target = validate_positions(values, len(self.description.hand_joints), "hand command")
        except CommandError as exc:
            self._intervene(f"hand: {exc}")
            raise
        verdict = self._batch.hand_command(self._row, np.asarray(target, dtype=float)[None], np.array([now_s]))[0]
        self._refuse("hand", verdict, target[None, :], slice(self._n_arm, None), self.config.hand_max_step_rad)

    # ------------------------------------------------------------------ e-stop
    def estop(self, reason: str = "e-stop requested") -> None:
        self._batch.estop(self._row, reason)

    def reset(self, now_s: float) -> tuple[bool, str]:
        """Release the e-stop. Refused unless /joint_states is fresh; filters restart from the measured state."""
        if not self._batch.reset(self._row, np.array([now_s]))[0]:
            return False, f"reset refused: no /joint_states in the last {self.config.state_timeout_s} s"
        return True, "e-stop released; waiting for new commands"

    # ------------------------------------------------------------------ tick
    def state_fresh(self, now_s: float) -> bool:
        return bool(self._batch.state_fresh(np.array([now_s]), self._row)[0])

    def readiness(self, now_s: float) -> tuple[bool, str]:
        """Whether a command sent now would be taken, and why not (what a source waits for before a plan)."""
        if self.estopped:
            return False, f"e-stop latched ({self.estop_reason}): call ~/reset"
        if not self._batch.has_state[0]:
            return False, "no complete /joint_states received yet"
        if not self.state_fresh(now_s):
            return False, f"/joint_states stale (none in the last {self.config.state_timeout_s} s)"
        return True, "ready: fresh /joint_states, taking commands"

    def tick(self, now_s: float) -> GateOutput:
        """One control period: what (if anything) to send to each driver now."""
        b = self._batch.tick(np.array([now_s]))
        return GateOutput(arm_rad=b.arm_rad[0].copy() if b.arm_valid[0] else None,
                          hand_rad=b.hand_rad[0].copy() if b.hand_valid[0] else None,
                          interventions=b.interventions[0], horizon_s=float(b.horizon_s[0]))

    def _clamped(self, part: PartFilters, target: np.ndarray, out: GateOutput, name: str) -> np.ndarray:
        return self._batch._clamped(part, self._row, np.asarray(target, dtype=float)[None], [out.interventions],
                                    name)[0]

    def workspace_violation_m(self, q: np.ndarray) -> float:
        """Summed distance (m) of the palm and fingertips outside the workspace box at ``q`` (0: all inside)."""
        return self._batch.workspace_violation_m(q)

    def collision_violation_m(self, q: np.ndarray) -> float:
        """Summed penetration (m) of self-collision and table pairs at ``q`` (0: collision-free)."""
        return self.collision.violation_m(q)


def load_safety_config(path: str | None = None, **overrides) -> SafetyConfig:
    """The deployed gate's limits from ``config/safety.yaml`` (the safety monitor's parameters), for code that must
    apply exactly the same ones outside ROS (training and evaluation envs). Unknown keys are refused."""
    import dataclasses

    from dexstack.config_loader import check_keys, read_yaml
    from dexstack.paths import data_path

    file = data_path("config", "safety.yaml") if path is None else path
    raw = read_yaml(file)
    section = (raw.get("safety_monitor") or {}).get("ros__parameters") or {} if isinstance(raw, dict) else {}
    names = [f.name for f in dataclasses.fields(SafetyConfig)]
    node_only = ["robot_profile", "diagnostics_rate_hz"]
    params = dict(check_keys(section, [*names, *node_only], str(file), "safety_monitor.ros__parameters"))
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in names}
    config = SafetyConfig(**{**values, **overrides})
    problems = config.errors()
    if problems:
        raise ValueError(f"{file}: " + "; ".join(problems))
    return config
