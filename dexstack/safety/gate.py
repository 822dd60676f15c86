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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ruckig import InputParameter, OutputParameter, Result, Ruckig, RuckigError

from dexstack.control.commands import CommandError, validate_positions, validate_trajectory
from dexstack.control.trajectory import TrajectoryFollower
from dexstack.diagnostics import ReasonCounter
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics
from dexstack.safety.collision import CollisionConfig, CollisionModel
from dexstack.safety.limits import command_limits

WORKSPACE_MODES = ("clip", "reject")
PLANNED_SETTLE_TIMEOUT_S = 5.0  # longest a planned trajectory may run past its end time to reach its last point


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


class FilterError(RuntimeError):
    """The online filter found no trajectory; the part holds."""


class _PartFilter:
    """Jerk-limited online filter of one part's setpoints (ruckig), seeded from the measured state."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, v_max: np.ndarray, a_max: float, j_max: float,
                 dt_s: float):
        n = lower.size
        self.lower, self.upper = lower, upper
        self._otg = Ruckig(n, dt_s)
        self._inp = InputParameter(n)
        self._out = OutputParameter(n)
        self._inp.max_velocity = v_max.tolist()
        self._inp.max_acceleration = [a_max] * n
        self._inp.max_jerk = [j_max] * n
        self.position = np.zeros(n)
        self.seeded = False

    def seed(self, q: np.ndarray) -> None:
        self.position = np.clip(q, self.lower, self.upper)
        self._inp.current_position = self.position.tolist()
        self._inp.current_velocity = [0.0] * self.position.size
        self._inp.current_acceleration = [0.0] * self.position.size
        self.seeded = True

    def step(self, target: np.ndarray, target_velocity: np.ndarray | None = None) -> np.ndarray:
        """Advance one tick toward ``target`` (inside limits) moving at ``target_velocity`` (default: at rest)."""
        self._inp.target_position = target.tolist()
        self._inp.target_acceleration = [0.0] * target.size
        velocity = np.zeros(target.size)
        if target_velocity is not None:
            v_max = np.asarray(self._inp.max_velocity)
            velocity = np.clip(target_velocity, -v_max, v_max)
            velocity[np.abs(velocity) < 1e-6] = 0.0  # numerical dust makes ruckig's step 2 fail
        self._inp.target_velocity = velocity.tolist()
        try:
            result = self._otg.update(self._inp, self._out)
        except RuckigError:
            result = None
        if result not in (Result.Working, Result.Finished):
            if target_velocity is not None:  # retry toward a target at rest before giving up
                return self.step(target)
            self.hold_here()
            raise FilterError(f"no jerk-limited trajectory to the target ({result}); holding")
        self._out.pass_to_input(self._inp)
        self.position = np.asarray(self._out.new_position)
        return self.position

    def hold_here(self) -> None:
        """Zero velocity at the current setpoint."""
        self.seed(self.position)


class SafetyGate:
    """The pure safety logic. Times are seconds on one monotonic clock supplied by the caller."""

    def __init__(self, description: RobotDescription, config: SafetyConfig):
        problems = config.errors()
        if problems:
            raise ValueError("invalid safety configuration: " + "; ".join(problems))
        self.description = description
        self.config = config
        self.kinematics = Kinematics(description)
        self.collision = CollisionModel(description, config.collision_config())
        self.last_collisions: list[str] = []  # pairs found by the last collision intervention
        limits = description.limit_arrays()
        self._lower, self._upper = limits["lower"], limits["upper"]
        self.interventions = ReasonCounter()
        self.frames = (description.profile.hand.palm_link, *description.profile.hand.fingertip_links)
        self._frame_ids = [self.kinematics.frame_id(f) for f in self.frames]
        self._n_arm = len(description.arm_joints)
        self.estopped = False
        self.estop_reason = ""
        self._q_meas: np.ndarray | None = None
        self._state_time: float = -np.inf
        self._arm_ref: TrajectoryFollower | None = None
        self._arm_ref_end = -np.inf
        self._arm_cmd_time = -np.inf
        self._arm_final: np.ndarray | None = None
        self._last_tick_s: float | None = None
        self._hand_target: np.ndarray | None = None
        self._hand_cmd_time = -np.inf
        self._arm_active = self._hand_active = False
        self._build_filters()

    # ------------------------------------------------------------------ configuration
    def _build_filters(self) -> None:
        c, d = self.config, self.description
        margin = c.position_margin_rad
        parts = {}
        for part, joints, a_max, j_max in (
            ("arm", d.arm_joints, c.arm_max_acceleration_rad_s2, c.arm_max_jerk_rad_s3),
            ("hand", d.hand_joints, c.hand_max_acceleration_rad_s2, c.hand_max_jerk_rad_s3),
        ):
            lim = d.limit_arrays(joints)
            lower, upper = command_limits(lim["lower"], lim["upper"], margin)
            parts[part] = _PartFilter(lower, upper, c.velocity_scale * lim["velocity"], a_max, j_max, 1.0 / c.rate_hz)
        self._arm, self._hand = parts["arm"], parts["hand"]
        n_arm, m = len(d.arm_joints), c.max_outside_limits_rad
        limits = d.limit_arrays()
        self._absurd_bounds = {"arm": (limits["lower"][:n_arm] - m, limits["upper"][:n_arm] + m),
                               "hand": (limits["lower"][n_arm:] - m, limits["upper"][n_arm:] + m)}

    def reconfigure(self, config: SafetyConfig) -> None:
        """Apply new limits; filters restart from the measured state (raises ValueError on a bad config)."""
        problems = config.errors()
        if problems:
            raise ValueError("; ".join(problems))
        if config.collision_config() != self.config.collision_config():
            self.collision = CollisionModel(self.description, config.collision_config())
        self.config = config
        self._build_filters()

    # ------------------------------------------------------------------ inputs
    def _refuse_absurd(self, name: str, points: np.ndarray, joints: slice, max_step_rad: float) -> None:
        """Raise CommandError for targets that are no slip of a limit but a bug: far outside the joint limits or a
        jump far from the measured state (first point) or from the previous point (later points)."""
        lower, upper = self._lower[joints], self._upper[joints]
        names = self.description.joints[joints]
        lo, hi = self._absurd_bounds[name]
        if (points < lo).any() or (points > hi).any():  # one comparison first: this runs on every input message
            outside = np.maximum(lower - points, 0.0) + np.maximum(points - upper, 0.0)
            k, j = np.unravel_index(np.argmax(outside), outside.shape)
            self._intervene(f"{name}: target too far outside the joint limits, refused")
            raise CommandError(f"{names[j]} target {points[k, j]:.3f} rad is {outside[k, j]:.3f} rad outside its "
                               f"limits [{lower[j]:.3f}, {upper[j]:.3f}] (more than max_outside_limits_rad = "
                               f"{self.config.max_outside_limits_rad}): refused, not clamped")
        if self._q_meas is None:
            return
        first = np.abs(points[0] - self._q_meas[joints]).max()
        if first > max_step_rad or (len(points) > 1 and np.abs(np.diff(points, axis=0)).max() > max_step_rad):
            step = np.abs(np.diff(points, axis=0, prepend=self._q_meas[None, joints]))
            k, j = np.unravel_index(np.argmax(step), step.shape)
            origin = "the measured state" if k == 0 else f"point {k - 1}"
            self._intervene(f"{name}: target step too large, refused")
            raise CommandError(f"{names[j]} target {points[k, j]:.3f} rad is {step[k, j]:.3f} rad from {origin} "
                               f"(more than {name}_max_step_rad = {max_step_rad}): refused")

    def _intervene(self, reason: str, out: GateOutput | None = None) -> None:
        self.interventions.add(reason)
        if out is not None:
            out.interventions.append(reason)

    def update_state(self, q_rad: Sequence[float], now_s: float) -> None:
        """Measured joint positions in description order."""
        q = np.asarray(q_rad, dtype=float)
        if q.shape != (len(self.description.joints),) or not np.all(np.isfinite(q)):
            self._intervene("state: malformed joint state ignored")
            return
        self._q_meas = q
        self._state_time = now_s

    def arm_command(self, joint_names: Sequence[str], positions: Sequence[Sequence[float]],
                    times_from_start_s: Sequence[float], now_s: float) -> None:
        """A JointTrajectory input. Raises CommandError (input ignored, robot holds) when malformed or stopped."""
        if self.estopped:
            self._intervene("estop: command refused")
            raise CommandError("e-stop is latched: reset first")
        try:
            times, q = validate_trajectory(joint_names, positions, times_from_start_s, self.description.arm_joints)
        except CommandError as exc:
            self._intervene(f"arm: {exc}")
            raise
        self._refuse_absurd("arm", np.asarray(q, dtype=float).reshape(len(times), self._n_arm),
                            slice(0, self._n_arm), self.config.arm_max_step_rad)
        if self._arm_ref is None:
            start = self._arm.position if self._arm.seeded else self._measured_arm()
            if start is None:
                self._intervene("state: no joint state yet")
                raise CommandError("no /joint_states received yet")
            self._arm_ref = TrajectoryFollower(start)
        self._arm_ref.set(now_s, times, q)
        self._arm_ref_end = self._arm_ref.end_time_s
        self._arm_cmd_time = now_s
        # A planned trajectory (several points) runs to its last point even after its end time, since the filter
        # may trail the reference at the limits; a stream of single points stops with the stream (watchdog).
        self._arm_final = q[-1] if len(times) > 1 else None

    def hand_command(self, values: Sequence[float], now_s: float) -> None:
        if self.estopped:
            self._intervene("estop: command refused")
            raise CommandError("e-stop is latched: reset first")
        try:
            target = validate_positions(values, len(self.description.hand_joints), "hand command")
        except CommandError as exc:
            self._intervene(f"hand: {exc}")
            raise
        self._refuse_absurd("hand", np.asarray(target, dtype=float)[None, :], slice(self._n_arm, None),
                            self.config.hand_max_step_rad)
        self._hand_target = target
        self._hand_cmd_time = now_s

    def _measured_arm(self) -> np.ndarray | None:
        return None if self._q_meas is None else self._q_meas[: self._n_arm]

    # ------------------------------------------------------------------ e-stop
    def estop(self, reason: str = "e-stop requested") -> None:
        self.estopped = True
        self.estop_reason = reason
        self._intervene(f"estop: {reason}")
        self._clear_inputs()

    def reset(self, now_s: float) -> tuple[bool, str]:
        """Release the e-stop. Refused unless /joint_states is fresh; filters restart from the measured state."""
        if not self.state_fresh(now_s):
            return False, f"reset refused: no /joint_states in the last {self.config.state_timeout_s} s"
        self.estopped = False
        self.estop_reason = ""
        self._clear_inputs()
        return True, "e-stop released; waiting for new commands"

    def _clear_inputs(self) -> None:
        self._arm_ref, self._arm_ref_end, self._arm_cmd_time, self._arm_final = None, -np.inf, -np.inf, None
        self._hand_target, self._hand_cmd_time = None, -np.inf
        self._arm.seeded = self._hand.seeded = False
        self._arm_active = self._hand_active = False

    # ------------------------------------------------------------------ tick
    def state_fresh(self, now_s: float) -> bool:
        return self._q_meas is not None and now_s - self._state_time <= self.config.state_timeout_s

    def readiness(self, now_s: float) -> tuple[bool, str]:
        """Whether a command sent now would be taken, and why not (what a source waits for before a plan)."""
        if self.estopped:
            return False, f"e-stop latched ({self.estop_reason}): call ~/reset"
        if self._q_meas is None:
            return False, "no complete /joint_states received yet"
        if not self.state_fresh(now_s):
            return False, f"/joint_states stale (none in the last {self.config.state_timeout_s} s)"
        return True, "ready: fresh /joint_states, taking commands"

    def tick(self, now_s: float) -> GateOutput:
        """One control period: what (if anything) to send to each driver now."""
        out = GateOutput()
        if self.estopped:
            return out
        if not self.state_fresh(now_s):
            if self._arm_active or self._hand_active:
                self._intervene("watchdog: /joint_states stale, holding", out)
                self._clear_inputs()
            return out
        c = self.config
        dt = 1.0 / c.rate_hz
        # Advance the filters by the time that really passed (a late tick moves as far as the limits allow).
        steps = 1 if self._last_tick_s is None else int(np.clip(round((now_s - self._last_tick_s) / dt), 1, 10))
        self._last_tick_s = now_s
        out.horizon_s = steps * dt
        arm_live = self._arm_ref is not None and (now_s - self._arm_cmd_time <= c.command_timeout_s
                                                  or now_s <= self._arm_ref_end
                                                  or self._finishing_planned_trajectory(now_s))
        hand_live = self._hand_target is not None and now_s - self._hand_cmd_time <= c.command_timeout_s
        if self._arm_active and not arm_live:
            self._intervene("watchdog: arm command stream stale, holding", out)
            self._arm_ref = None
            self._arm.hold_here()
        if self._hand_active and not hand_live:
            self._intervene("watchdog: hand command stream stale, holding", out)
            self._hand_target = None
            self._hand.hold_here()
        self._arm_active, self._hand_active = arm_live, hand_live
        if not (arm_live or hand_live):
            return out

        q_meas = self._q_meas
        q_prev = np.concatenate([self._seeded(self._arm, q_meas[: self._n_arm], out, "arm"),
                                 self._seeded(self._hand, q_meas[self._n_arm:], out, "hand")])
        # A part that is not commanded stays where it is measured: check the setpoint against that, not its filter.
        if not arm_live:
            q_prev[: self._n_arm] = q_meas[: self._n_arm]
        if not hand_live:
            q_prev[self._n_arm:] = q_meas[self._n_arm:]
        q_new = q_prev.copy()
        if arm_live:
            # Track the reference and its velocity, so timed trajectories are followed without lag.
            ref = self._clamped(self._arm, self._arm_ref.sample(now_s), out, "arm")
            ref_next = np.clip(self._arm_ref.sample(now_s + dt), self._arm.lower, self._arm.upper)
            q_new[: self._n_arm] = self._filtered(self._arm, ref, (ref_next - ref) / dt, out, "arm", steps)
        if hand_live:
            target = self._clamped(self._hand, self._hand_target, out, "hand")
            q_new[self._n_arm:] = self._filtered(self._hand, target, None, out, "hand", steps)
        q_safe = self._workspace(q_prev, q_new, out)
        q_safe = self._collision_free(q_prev, q_safe, out)
        if q_safe is not q_new:
            if arm_live:
                self._arm.seed(q_safe[: self._n_arm])
            if hand_live:
                self._hand.seed(q_safe[self._n_arm:])
        if arm_live:
            out.arm_rad = q_safe[: self._n_arm].copy()
        if hand_live:
            out.hand_rad = q_safe[self._n_arm:].copy()
        return out

    def _filtered(self, part: _PartFilter, target: np.ndarray, velocity: np.ndarray | None, out: GateOutput,
                  name: str, steps: int = 1) -> np.ndarray:
        try:
            for _ in range(steps):
                position = part.step(target, velocity)
            return position
        except FilterError as exc:
            self._intervene(f"{name}: {exc}", out)
            return part.position.copy()

    def _finishing_planned_trajectory(self, now_s: float) -> bool:
        """A planned trajectory's last point not reached yet (bounded: a blocked robot does not keep it alive)."""
        if self._arm_final is None or now_s - self._arm_ref_end > PLANNED_SETTLE_TIMEOUT_S:
            return False
        final = np.clip(self._arm_final, self._arm.lower, self._arm.upper)
        return bool(np.max(np.abs(self._arm.position - final)) > 1e-4)

    def _seeded(self, part: _PartFilter, q_meas: np.ndarray, out: GateOutput, name: str) -> np.ndarray:
        limit = self.config.max_tracking_error_rad
        if not part.seeded:
            part.seed(q_meas)
        elif np.max(np.abs(part.position - q_meas)) > limit:
            if part is self._hand:
                # A finger blocked by a grasped object is the grasp: its force is (servo stiffness x setpoint error).
                # Restarting from the measured state dropped that force to zero every time the error reached the
                # limit (a held cube slipped); pulling the setpoint back to the limit keeps the grip and the same
                # bound on how far a finger jumps when the object goes away.
                self._intervene("hand: robot far from setpoint, setpoint pulled back to max_tracking_error_rad", out)
                part.seed(q_meas + np.clip(part.position - q_meas, -limit, limit))
            else:
                self._intervene(f"{name}: robot far from setpoint, restarting from measured state", out)
                part.seed(q_meas)
        return part.position.copy()

    def _clamped(self, part: _PartFilter, target: np.ndarray, out: GateOutput, name: str) -> np.ndarray:
        clamped = np.clip(target, part.lower, part.upper)
        if np.any(clamped != target):
            self._intervene(f"{name}: target clamped into joint limits", out)
        return clamped

    def workspace_violation_m(self, q: np.ndarray) -> float:
        """Summed distance (m) of the palm and fingertips outside the workspace box at ``q`` (0: all inside)."""
        self.kinematics.update(q)
        oMf = self.kinematics.data.oMf
        p = np.array([oMf[i].translation for i in self._frame_ids])  # (frames, 3), one numpy pass: it runs every tick
        lo, hi = np.asarray(self.config.workspace_min_m), np.asarray(self.config.workspace_max_m)
        return float(np.sum(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))

    def _workspace(self, q_prev: np.ndarray, q_new: np.ndarray, out: GateOutput) -> np.ndarray:
        return self._constrain(self.workspace_violation_m, q_prev, q_new, out, (
            "workspace: outside the box and not moving back in, holding",
            "workspace: palm/fingertips would leave the box, holding",
            "workspace: step clipped at the box boundary"))

    def collision_violation_m(self, q: np.ndarray) -> float:
        """Summed penetration (m) of self-collision and table pairs at ``q`` (0: collision-free)."""
        return self.collision.violation_m(q)

    def _collision_free(self, q_prev: np.ndarray, q_new: np.ndarray, out: GateOutput) -> np.ndarray:
        pairs = self.collision.colliding_pair_indices(q_new)
        if not pairs:
            return q_new
        # One control step is short: the pairs in contact at its end are the ones to bisect it against.
        q_safe = self._constrain(lambda q: self.collision.pairs_violation_m(q, pairs), q_prev, q_new, out, (
            "collision: in collision and not moving out, holding",
            "collision: step would collide, holding",
            "collision: step clipped before contact"), bisections=6)  # 1/64 of one tick's step: enough
        if q_safe is not q_new:
            self.last_collisions = [self.collision.pair_names[k] for k in pairs]
        return q_safe

    def _constrain(self, violation, q_prev: np.ndarray, q_new: np.ndarray, out: GateOutput,
                   reasons: tuple[str, str, str], bisections: int = 8) -> np.ndarray:
        """Keep the step q_prev -> q_new where ``violation`` is 0 (clip it at the boundary, or hold)."""
        new = violation(q_new)
        if new == 0.0:
            return q_new
        prev = violation(q_prev)
        if prev > 0.0:  # already outside (e.g. started there): only steps that go back toward the allowed set pass
            if new < prev:
                return q_new
            self._intervene(reasons[0], out)
            return q_prev
        if self.config.workspace_mode == "reject":
            self._intervene(reasons[1], out)
            return q_prev
        lo, hi = 0.0, 1.0  # largest fraction of the step that stays inside
        for _ in range(bisections):
            mid = (lo + hi) / 2
            if violation(q_prev + mid * (q_new - q_prev)) > 0.0:
                hi = mid
            else:
                lo = mid
        self._intervene(reasons[2], out)
        return q_prev + lo * (q_new - q_prev)


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
