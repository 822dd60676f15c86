"""GateBatch: the safety gate's rules for N independent robots at once; the deployed :class:`~.gate.SafetyGate` is
a GateBatch of one.

The rules (see :mod:`dexstack.safety.gate`) are written once, here, over arrays with one row per robot: every
branch of a tick is a mask over rows, so a training process runs N robots' gates as a few numpy operations per
tick instead of N Python gates (the Python overhead of one gate was most of its cost). What stays per row: the
jerk-limited filters (ruckig has no batch interface: one ``Ruckig`` per row and part, as before), the collision
check of a setpoint (coal, C++, ~10 us) and the workspace box's forward kinematics. Row ``i`` of a GateBatch computes
exactly what a SafetyGate fed the same inputs computes (``tests/unit/test_safety_gate_batch.py``).

Inputs here are arrays already validated by the caller's own layer (:class:`~.gate.SafetyGate` validates ROS
messages and formats refusal messages; training validates its tensors); refusals of absurd targets and inputs while
e-stopped are decided here, row by row, with the gate's reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from ruckig import InputParameter, OutputParameter, Result, Ruckig, RuckigError

from dexstack.control.trajectory import TrajectoryFollower
from dexstack.diagnostics import ReasonCounter
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics
from dexstack.safety.collision import CollisionModel
from dexstack.safety.limits import command_limits

if TYPE_CHECKING:
    from dexstack.safety.gate import SafetyConfig

PLANNED_SETTLE_TIMEOUT_S = 5.0  # longest a planned trajectory may run past its end time to reach its last point
_OK = (Result.Working, Result.Finished)

WORKSPACE_REASONS = ("workspace: outside the box and not moving back in, holding",
                     "workspace: palm/fingertips would leave the box, holding",
                     "workspace: step clipped at the box boundary")
# Verdicts on a command (arm_command / hand_command) and the intervention each refusal counts.
TAKEN, REFUSED_ESTOP, REFUSED_OUTSIDE, REFUSED_JUMP, REFUSED_NO_STATE = range(5)
REFUSAL_REASONS = {REFUSED_ESTOP: "estop: command refused",
                   REFUSED_OUTSIDE: "{part}: target too far outside the joint limits, refused",
                   REFUSED_JUMP: "{part}: target step too large, refused",
                   REFUSED_NO_STATE: "state: no joint state yet"}
UNCHANGED, HELD, CLIPPED = range(3)  # what the workspace / collision stage did to a setpoint
COLLISION_REASONS = ("collision: in collision and not moving out, holding",
                     "collision: step would collide, holding",
                     "collision: step clipped before contact")


class PartFilters:
    """Jerk-limited online filters (ruckig) of one part for N rows, seeded from the measured state."""

    def __init__(self, n_rows: int, lower: np.ndarray, upper: np.ndarray, v_max: np.ndarray, a_max: float,
                 j_max: float, dt_s: float):
        n = lower.size
        self.lower, self.upper, self.v_max = lower, upper, np.asarray(v_max, dtype=float)
        self._zeros = [0.0] * n
        self._otg = [Ruckig(n, dt_s) for _ in range(n_rows)]
        self._inp = [InputParameter(n) for _ in range(n_rows)]
        self._out = [OutputParameter(n) for _ in range(n_rows)]
        for inp in self._inp:
            inp.max_velocity = self.v_max.tolist()
            inp.max_acceleration = [a_max] * n
            inp.max_jerk = [j_max] * n
            inp.target_acceleration = self._zeros  # never changes: ruckig and pass_to_input leave it alone
        self.position = np.zeros((n_rows, n))
        self.seeded = np.zeros(n_rows, dtype=bool)

    def clip(self, q: np.ndarray) -> np.ndarray:
        """Into the command limits (np.clip's values, without its overhead)."""
        return np.minimum(np.maximum(q, self.lower), self.upper)

    def seed(self, rows: np.ndarray, q: np.ndarray) -> None:
        """Rows ``rows`` restart at rest at ``q`` (len(rows), n) clipped into the limits."""
        q = self.clip(q)
        self.position[rows] = q
        for i, row in zip(rows, q):
            inp = self._inp[i]
            inp.current_position = row.tolist()
            inp.current_velocity = self._zeros
            inp.current_acceleration = self._zeros
        self.seeded[rows] = True

    def step_row(self, i: int, target: list, velocity: list | None) -> tuple[bool, object]:
        """Advance row ``i`` one tick toward ``target`` moving at ``velocity`` (None: at rest). Returns (True, None),
        or (False, ruckig's result or None) when no trajectory was found: the row then holds where it is."""
        inp, out = self._inp[i], self._out[i]
        inp.target_position = target
        inp.target_velocity = self._zeros if velocity is None else velocity
        try:
            result = self._otg[i].update(inp, out)
        except RuckigError as exc:  # invalid input (e.g. a non-finite target): name it in the intervention
            result = "RuckigError: " + " ".join(str(exc).split(" input:")[0].split())  # not its input dump
        except ValueError as exc:  # an error code the binding's Result enum lacks (e.g. -101, duration overflow)
            result = f"ruckig result {exc}"
        if result not in _OK:
            if velocity is not None:  # retry toward a target at rest before giving up
                return self.step_row(i, target, None)
            self.seed(np.array([i]), self.position[i:i + 1])
            return False, result
        out.pass_to_input(inp)
        self.position[i] = out.new_position
        return True, None


@dataclass
class TickBatch:
    """One tick's outputs for every row (rows without ``*_valid`` send nothing for that part)."""

    arm_rad: np.ndarray  # (N, n_arm)
    arm_valid: np.ndarray  # (N,) bool
    hand_rad: np.ndarray  # (N, n_hand)
    hand_valid: np.ndarray
    horizon_s: np.ndarray  # (N,) time the filter advanced this tick
    interventions: list[list[str]]


class GateBatch:
    """The safety gate's state and rules for ``n_rows`` robots. Times are seconds, one per row."""

    def __init__(self, description: RobotDescription, config: SafetyConfig, n_rows: int,
                 collision: CollisionModel | None = None, kinematics: Kinematics | None = None):
        problems = config.errors()
        if problems:
            raise ValueError("invalid safety configuration: " + "; ".join(problems))
        self.description, self.config, self.n_rows = description, config, n_rows
        self.kinematics = kinematics or Kinematics(description)
        self.collision = collision or CollisionModel(description, config.collision_config())
        limits = description.limit_arrays()
        self.lower, self.upper = limits["lower"], limits["upper"]
        self.n_arm, self.n = len(description.arm_joints), len(description.joints)
        self.frames = (description.profile.hand.palm_link, *description.profile.hand.fingertip_links)
        self._frame_ids = [self.kinematics.frame_id(f) for f in self.frames]
        N = n_rows
        self.counters = [ReasonCounter() for _ in range(N)]
        self.last_collisions: list[list[str]] = [[] for _ in range(N)]
        self.estopped = np.zeros(N, dtype=bool)
        self.estop_reason = [""] * N
        self.q_meas = np.zeros((N, self.n))
        self.has_state = np.zeros(N, dtype=bool)
        self.state_time = np.full(N, -np.inf)
        self.arm_ref: list[TrajectoryFollower | None] = [None] * N  # the arm's input reference per row
        self.arm_ref_valid = np.zeros(N, dtype=bool)
        # each row's reference as one segment (t0, t1, q0, q1) where it has at most two knots (a one-point command:
        # the common case), sampled for all rows at once with TrajectoryFollower.sample's arithmetic; other rows
        # (planned multi-point trajectories) are sampled by their follower
        self._seg_t = np.zeros((N, 2))
        self._seg_q = np.zeros((N, 2, self.n_arm))
        self._seg_ok = np.zeros(N, dtype=bool)
        self.arm_ref_end = np.full(N, -np.inf)
        self.arm_cmd_time = np.full(N, -np.inf)
        self.arm_final = np.zeros((N, self.n_arm))
        self.arm_final_valid = np.zeros(N, dtype=bool)
        self.last_tick = np.full(N, np.nan)  # nan: never ticked
        self.hand_target = np.zeros((N, self.n - self.n_arm))
        self.hand_valid = np.zeros(N, dtype=bool)
        self.hand_cmd_time = np.full(N, -np.inf)
        self.arm_active = np.zeros(N, dtype=bool)
        self.hand_active = np.zeros(N, dtype=bool)
        self._build_filters()

    # ------------------------------------------------------------------ configuration
    def _build_filters(self) -> None:
        c, d = self.config, self.description
        parts = {}
        for part, joints, a_max, j_max in (
            ("arm", d.arm_joints, c.arm_max_acceleration_rad_s2, c.arm_max_jerk_rad_s3),
            ("hand", d.hand_joints, c.hand_max_acceleration_rad_s2, c.hand_max_jerk_rad_s3),
        ):
            lim = d.limit_arrays(joints)
            lower, upper = command_limits(lim["lower"], lim["upper"], c.position_margin_rad)
            parts[part] = PartFilters(self.n_rows, lower, upper, c.velocity_scale * lim["velocity"], a_max, j_max,
                                      1.0 / c.rate_hz)
        self.arm, self.hand = parts["arm"], parts["hand"]
        m, n_arm = c.max_outside_limits_rad, self.n_arm
        self.absurd_bounds = {"arm": (self.lower[:n_arm] - m, self.upper[:n_arm] + m),
                              "hand": (self.lower[n_arm:] - m, self.upper[n_arm:] + m)}
        # The box can only fire if some point of the robot can leave it: a box holding the ball the robot reaches
        # (every chain's summed link offsets around the base) makes its forward kinematics unnecessary.
        lo, hi = np.asarray(c.workspace_min_m), np.asarray(c.workspace_max_m)
        self._box_always_inside = bool(np.all(lo < -self._reach_m()) and np.all(hi > self._reach_m()))

    def _reach_m(self) -> float:
        m = self.kinematics.model
        chain = np.zeros(m.njoints)
        for j in range(1, m.njoints):
            chain[j] = chain[m.parents[j]] + float(np.linalg.norm(m.jointPlacements[j].translation))
        return max(chain[m.frames[f].parentJoint] + float(np.linalg.norm(m.frames[f].placement.translation))
                   for f in self._frame_ids)

    def reconfigure(self, config: SafetyConfig) -> None:
        """Apply new limits; filters restart from the measured state (raises ValueError on a bad config)."""
        problems = config.errors()
        if problems:
            raise ValueError("; ".join(problems))
        if config.collision_config() != self.config.collision_config():
            self.collision = CollisionModel(self.description, config.collision_config())
        self.config = config
        self._build_filters()

    def intervene(self, i: int, reason: str, out: list[list[str]] | None = None) -> None:
        self.counters[i].add(reason)
        if out is not None:
            out[i].append(reason)

    # ------------------------------------------------------------------ inputs
    def update_state(self, rows: np.ndarray, q: np.ndarray, now_s: np.ndarray) -> None:
        """Measured joint positions (len(rows), n), description order; rows with a non-finite value are ignored."""
        good = np.isfinite(q).all(axis=1)
        if not good.all():
            for i in np.asarray(rows)[~good]:
                self.intervene(int(i), "state: malformed joint state ignored")
            rows, q, now_s = np.asarray(rows)[good], q[good], np.asarray(now_s, dtype=float)[good]
        self.q_meas[rows] = q
        self.has_state[rows] = True
        self.state_time[rows] = now_s

    def absurd(self, name: str, rows: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which rows' targets (len(rows), K, joints of the part) are no slip of a limit but a bug: ``outside``
        further than ``max_outside_limits_rad`` outside the joint limits; ``jump``: a step larger than the part's
        ``max_step_rad`` from the measured state (first point; rows with a state) or from the previous point."""
        lo, hi = self.absurd_bounds[name]
        outside = ((points < lo) | (points > hi)).any(axis=(1, 2))
        joints = slice(0, self.n_arm) if name == "arm" else slice(self.n_arm, None)
        max_step = self.config.arm_max_step_rad if name == "arm" else self.config.hand_max_step_rad
        first = np.abs(points[:, 0] - self.q_meas[rows, joints]).max(axis=1) > max_step
        jump = first & self.has_state[rows]
        if points.shape[1] > 1:
            jump |= (np.abs(np.diff(points, axis=1)).max(axis=(1, 2)) > max_step) & self.has_state[rows]
        return outside, jump & ~outside

    def accept_arm(self, rows: np.ndarray, times_s: np.ndarray, q: np.ndarray, now_s: np.ndarray) -> np.ndarray:
        """Take arm trajectories (times (K,) from each row's ``now_s``, points (len(rows), K, n_arm)) that passed the
        refusals; returns which rows took it (False: no joint state yet to start from)."""
        rows, now_s = np.asarray(rows), np.asarray(now_s, dtype=float)
        fresh = ~self.arm_ref_valid[rows]
        if fresh.any():  # a new reference starts at the filter's setpoint, else at the measured state
            new = rows[fresh]
            seeded = self.arm.seeded[new]
            ok = seeded | self.has_state[new]
            for i in new[~ok]:
                self.intervene(int(i), REFUSAL_REASONS[REFUSED_NO_STATE])
            start = np.where(seeded[:, None], self.arm.position[new], self.q_meas[new, : self.n_arm])
            for i, q0 in zip(new[ok], start[ok]):
                self.arm_ref[i] = TrajectoryFollower(q0)
                self._segment(i)
            self.arm_ref_valid[new[ok]] = True
            taken = np.ones(len(rows), dtype=bool)
            taken[np.flatnonzero(fresh)[~ok]] = False
            rows, now_s, q = rows[taken], now_s[taken], q[taken]
        else:
            taken = np.ones(len(rows), dtype=bool)
        for i, t, points in zip(rows, now_s, q):
            self.arm_ref[i].set(t, times_s, points)
            self.arm_ref_end[i] = self.arm_ref[i].end_time_s
            self._segment(i)
        self.arm_cmd_time[rows] = now_s
        # A planned trajectory (several points) runs to its last point even after its end time, since the filter
        # may trail the reference at the limits; a stream of single points stops with the stream (watchdog).
        planned = len(times_s) > 1
        self.arm_final_valid[rows] = planned
        if planned:
            self.arm_final[rows] = q[:, -1]
        return taken

    def accept_hand(self, rows: np.ndarray, targets: np.ndarray, now_s: np.ndarray) -> None:
        self.hand_target[rows] = targets
        self.hand_valid[rows] = True
        self.hand_cmd_time[rows] = now_s

    def arm_command(self, rows: np.ndarray, times_s: np.ndarray, q: np.ndarray, now_s: np.ndarray) -> np.ndarray:
        """Arm trajectories for rows (times (K,), finite points (len(rows), K, n_arm)): the gate's refusals, then
        :meth:`accept_arm`. Returns each row's verdict (``TAKEN`` or why it was refused, ``REFUSAL_REASONS``)."""
        return self._command("arm", rows, q, now_s, lambda r, pts, t: self.accept_arm(r, times_s, pts, t))

    def hand_command(self, rows: np.ndarray, targets: np.ndarray, now_s: np.ndarray) -> np.ndarray:
        """Hand position targets (len(rows), n_hand), finite; verdicts as :meth:`arm_command`."""
        def take(r, pts, t):
            self.accept_hand(r, pts[:, 0], t)
            return np.ones(len(r), dtype=bool)

        return self._command("hand", rows, targets[:, None, :], now_s, take)

    def _command(self, name: str, rows: np.ndarray, points: np.ndarray, now_s: np.ndarray, take) -> np.ndarray:
        rows, now_s = np.asarray(rows), np.asarray(now_s, dtype=float)
        verdict = np.full(len(rows), TAKEN)
        outside, jump = self.absurd(name, rows, points)
        estopped = self.estopped[rows]
        if not (outside.any() or jump.any() or estopped.any()):  # the common case: every row takes it
            verdict[~take(rows, points, now_s)] = REFUSED_NO_STATE
            return verdict
        verdict[jump] = REFUSED_JUMP
        verdict[outside] = REFUSED_OUTSIDE
        verdict[estopped] = REFUSED_ESTOP
        for k in np.flatnonzero(verdict != TAKEN):
            self.intervene(int(rows[k]), REFUSAL_REASONS[verdict[k]].format(part=name))
        ok = verdict == TAKEN
        if ok.any():
            verdict[np.flatnonzero(ok)[~take(rows[ok], points[ok], now_s[ok])]] = REFUSED_NO_STATE
        return verdict

    # ------------------------------------------------------------------ e-stop
    def estop(self, rows: np.ndarray, reason: str = "e-stop requested") -> None:
        for i in rows:
            self.estopped[i] = True
            self.estop_reason[i] = reason
            self.intervene(int(i), f"estop: {reason}")
        self.clear_inputs(rows)

    def reset(self, rows: np.ndarray, now_s: np.ndarray) -> np.ndarray:
        """Release the e-stop of rows with fresh state (returns which); filters restart from the measured state."""
        rows = np.asarray(rows)
        ok = self.state_fresh(now_s, rows)
        self.estopped[rows[ok]] = False
        for i in rows[ok]:
            self.estop_reason[i] = ""
        self.clear_inputs(rows[ok])
        return ok

    def clear_inputs(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=int)
        self.arm_ref_valid[rows] = False
        self.arm_ref_end[rows] = self.arm_cmd_time[rows] = -np.inf
        self.arm_final_valid[rows] = False
        self.hand_valid[rows] = False
        self.hand_cmd_time[rows] = -np.inf
        self.arm.seeded[rows] = self.hand.seeded[rows] = False
        self.arm_active[rows] = self.hand_active[rows] = False

    def state_fresh(self, now_s: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        sel = slice(None) if rows is None else rows
        return self.has_state[sel] & (np.asarray(now_s, dtype=float) - self.state_time[sel]
                                      <= self.config.state_timeout_s)

    # ------------------------------------------------------------------ tick
    def tick(self, now_s: np.ndarray) -> TickBatch:
        """One control period of every row at its time ``now_s`` (N,)."""
        N, n_arm, c = self.n_rows, self.n_arm, self.config
        now = np.asarray(now_s, dtype=float)
        if now.ndim == 0:
            now = np.full(N, float(now))
        reasons: list[list[str]] = [[] for _ in range(N)]
        out = TickBatch(np.zeros((N, n_arm)), np.zeros(N, dtype=bool), np.zeros((N, self.n - n_arm)),
                        np.zeros(N, dtype=bool), np.zeros(N), reasons)
        running = ~self.estopped
        fresh = self.state_fresh(now)
        ticking = running & fresh
        if not ticking.all():
            for i in np.flatnonzero(running & ~fresh & (self.arm_active | self.hand_active)):
                self.intervene(int(i), "watchdog: /joint_states stale, holding", reasons)
                self.clear_inputs(np.array([i]))
        rows = np.flatnonzero(ticking)
        if rows.size == 0:
            return out
        dt = 1.0 / c.rate_hz
        t = now[rows]
        # Advance the filters by the time that really passed (a late tick moves as far as the limits allow).
        last = self.last_tick[rows]
        steps = np.where(np.isnan(last), 1, np.clip(np.round((t - last) / dt), 1, 10)).astype(int)
        self.last_tick[rows] = t
        out.horizon_s[rows] = steps * dt
        arm_live = self.arm_ref_valid[rows] & ((t - self.arm_cmd_time[rows] <= c.command_timeout_s)
                                               | (t <= self.arm_ref_end[rows]) | self._finishing_planned(rows, t))
        hand_live = self.hand_valid[rows] & (t - self.hand_cmd_time[rows] <= c.command_timeout_s)
        if not (arm_live.all() and hand_live.all()):
            for i in rows[self.arm_active[rows] & ~arm_live]:
                self.intervene(int(i), "watchdog: arm command stream stale, holding", reasons)
                self.arm_ref_valid[i] = False
                self.arm.seed(np.array([i]), self.arm.position[i:i + 1])
            for i in rows[self.hand_active[rows] & ~hand_live]:
                self.intervene(int(i), "watchdog: hand command stream stale, holding", reasons)
                self.hand_valid[i] = False
                self.hand.seed(np.array([i]), self.hand.position[i:i + 1])
        self.arm_active[rows], self.hand_active[rows] = arm_live, hand_live
        live = arm_live | hand_live
        if not live.all():
            rows, t, steps, arm_live, hand_live = rows[live], t[live], steps[live], arm_live[live], hand_live[live]
            if rows.size == 0:
                return out

        q_meas = self.q_meas[rows]
        q_prev = np.concatenate([self._seeded(self.arm, rows, q_meas[:, :n_arm], reasons, "arm"),
                                 self._seeded(self.hand, rows, q_meas[:, n_arm:], reasons, "hand")], axis=1)
        # A part that is not commanded stays where it is measured: check the setpoint against that, not its filter.
        if not arm_live.all():
            q_prev[~arm_live, :n_arm] = q_meas[~arm_live, :n_arm]
        if not hand_live.all():
            q_prev[~hand_live, n_arm:] = q_meas[~hand_live, n_arm:]
        q_new = q_prev.copy()
        if arm_live.any():
            # Track the reference and its velocity, so timed trajectories are followed without lag.
            a_rows, a_t = rows[arm_live], t[arm_live]
            ref = self._clamped(self.arm, a_rows, self._sample_arm_ref(a_rows, a_t), reasons, "arm")
            ref_next = self.arm.clip(self._sample_arm_ref(a_rows, a_t + dt))
            q_new[arm_live, :n_arm] = self._filtered(self.arm, a_rows, ref, (ref_next - ref) / dt, reasons, "arm",
                                                     steps[arm_live])
        if hand_live.any():
            h_rows = rows[hand_live]
            target = self._clamped(self.hand, h_rows, self.hand_target[h_rows], reasons, "hand")
            q_new[hand_live, n_arm:] = self._filtered(self.hand, h_rows, target, None, reasons, "hand",
                                                      steps[hand_live])
        ws = np.zeros(len(rows), dtype=int)
        q_safe = q_new
        if not self._box_always_inside:
            q_safe, ws = self._constrain(lambda k, q: self.workspace_violation_m(q), rows, q_prev, q_safe,
                                         reasons, WORKSPACE_REASONS, 8)
        q_safe, col = self._collision_free(rows, q_prev, q_safe, ws == HELD, reasons)
        changed = (ws != UNCHANGED) | (col != UNCHANGED)
        for part, live, cols in ((self.arm, arm_live, slice(0, n_arm)), (self.hand, hand_live, slice(n_arm, None))):
            reseed = changed & live
            if reseed.any():
                part.seed(rows[reseed], q_safe[reseed, cols])
        out.arm_rad[rows] = q_safe[:, :n_arm]
        out.hand_rad[rows] = q_safe[:, n_arm:]
        out.arm_valid[rows], out.hand_valid[rows] = arm_live, hand_live
        return out

    def _segment(self, i: int) -> None:
        times, q = self.arm_ref[i].knots
        self._seg_ok[i] = ok = len(times) <= 2
        if ok:
            self._seg_t[i] = times[0], times[-1]
            self._seg_q[i, 0], self._seg_q[i, 1] = q[0], q[-1]

    def _sample_arm_ref(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each row's arm reference at its time: ``arm_ref[i].sample(t)``, bit for bit (the same operations in the
        same order), vectorised over the rows whose reference is one segment."""
        ok = self._seg_ok[rows]
        if not ok.all():
            out = np.empty((len(rows), self.n_arm))
            if ok.any():
                out[ok] = self._sample_arm_ref(rows[ok], t[ok])
            for k in np.flatnonzero(~ok):
                out[k] = self.arm_ref[rows[k]].sample(t[k])
            return out
        t0, t1 = self._seg_t[rows, 0], self._seg_t[rows, 1]
        q0, q1 = self._seg_q[rows, 0], self._seg_q[rows, 1]
        # sample(): up to t0 the first knot (also where t0 == t1), from t1 on the last
        out = np.where(((t >= t1) & ~(t <= t0))[:, None], q1, q0)
        inside = (t > t0) & (t < t1)
        if inside.any():
            alpha = ((t[inside] - t0[inside]) / (t1[inside] - t0[inside]))[:, None]
            out[inside] = (1.0 - alpha) * q0[inside] + alpha * q1[inside]
        return out

    def _finishing_planned(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """A planned trajectory's last point not reached yet (bounded: a blocked robot does not keep it alive)."""
        within = self.arm_final_valid[rows] & (t - self.arm_ref_end[rows] <= PLANNED_SETTLE_TIMEOUT_S)
        if not within.any():
            return within
        final = self.arm.clip(self.arm_final[rows])
        return within & (np.abs(self.arm.position[rows] - final).max(axis=1) > 1e-4)

    def _seeded(self, part: PartFilters, rows: np.ndarray, q_meas: np.ndarray, reasons: list[list[str]],
                name: str) -> np.ndarray:
        limit = self.config.max_tracking_error_rad
        unseeded = ~part.seeded[rows]
        if unseeded.any():
            part.seed(rows[unseeded], q_meas[unseeded])
        far = ~unseeded & (np.abs(part.position[rows] - q_meas).max(axis=1) > limit)
        if far.any():
            if part is self.hand:
                # A finger blocked by a grasped object is the grasp: its force is (servo stiffness x setpoint error).
                # Restarting from the measured state dropped that force to zero every time the error reached the
                # limit (a held cube slipped); pulling the setpoint back to the limit keeps the grip and the same
                # bound on how far a finger jumps when the object goes away.
                reason = "hand: robot far from setpoint, setpoint pulled back to max_tracking_error_rad"
                back = q_meas[far] + np.clip(part.position[rows[far]] - q_meas[far], -limit, limit)
            else:
                reason = f"{name}: robot far from setpoint, restarting from measured state"
                back = q_meas[far]
            for i in rows[far]:
                self.intervene(int(i), reason, reasons)
            part.seed(rows[far], back)
        return part.position[rows]

    def _clamped(self, part: PartFilters, rows: np.ndarray, target: np.ndarray, reasons: list[list[str]] | None,
                 name: str) -> np.ndarray:
        clamped = part.clip(target)
        for i in rows[(clamped != target).any(axis=1)]:
            self.intervene(int(i), f"{name}: target clamped into joint limits", reasons)
        return clamped

    def _filtered(self, part: PartFilters, rows: np.ndarray, target: np.ndarray, velocity: np.ndarray | None,
                  reasons: list[list[str]], name: str, steps: np.ndarray) -> np.ndarray:
        targets = target.tolist()
        velocities = None
        if velocity is not None:
            velocity = np.clip(velocity, -part.v_max, part.v_max)
            velocity[np.abs(velocity) < 1e-6] = 0.0  # numerical dust makes ruckig's step 2 fail
            velocities = velocity.tolist()
        for k, i in enumerate(rows):
            for _ in range(steps[k]):
                ok, result = part.step_row(i, targets[k], None if velocities is None else velocities[k])
                if not ok:
                    self.intervene(int(i), f"{name}: no jerk-limited trajectory to the target ({result}); holding",
                                   reasons)
                    break
        return part.position[rows]

    # ------------------------------------------------------------------ workspace and collisions
    def workspace_violation_m(self, q: np.ndarray) -> float:
        """Summed distance (m) of the palm and fingertips outside the workspace box at ``q`` (0: all inside)."""
        self.kinematics.update(q)
        oMf = self.kinematics.data.oMf
        p = np.array([oMf[i].translation for i in self._frame_ids])  # (frames, 3), one numpy pass: it runs every tick
        lo, hi = np.asarray(self.config.workspace_min_m), np.asarray(self.config.workspace_max_m)
        return float(np.sum(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))

    def _collision_free(self, rows: np.ndarray, q_prev: np.ndarray, q_new: np.ndarray, at_prev: np.ndarray,
                        reasons: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Collision stage of setpoints ``q_new`` (rows ``at_prev``: already held at ``q_prev`` by the box, where a
        hold changes nothing and so reports no pairs)."""
        pairs = [self.collision.colliding_pair_indices(q) for q in q_new]
        hit = np.array([bool(p) for p in pairs], dtype=bool)
        out = np.zeros(len(rows), dtype=int)
        if not hit.any():
            return q_new, out
        # One control step is short: the pairs in contact at its end are the ones to bisect it against.
        sub = np.flatnonzero(hit)
        q_sub, verdict = self._constrain(lambda k, q: self.collision.pairs_violation_m(q, pairs[sub[k]]), rows[sub],
                                         q_prev[sub], q_new[sub], reasons, COLLISION_REASONS, 6)  # 1/64 of a tick
        verdict[(verdict == HELD) & at_prev[sub]] = UNCHANGED
        for k in np.flatnonzero(verdict != UNCHANGED):
            self.last_collisions[rows[sub[k]]] = [self.collision.pair_names[p] for p in pairs[sub[k]]]
        q_safe = q_new.copy()
        q_safe[sub] = q_sub
        out[sub] = verdict
        return q_safe, out

    def _constrain(self, violation, rows: np.ndarray, q_prev: np.ndarray, q_new: np.ndarray,
                   reasons: list[list[str]], texts: tuple[str, str, str], bisections: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Keep each row's step q_prev -> q_new where ``violation(k, q)`` (row k) is 0: clip it at the boundary, or
        hold. Returns the constrained setpoints and per row UNCHANGED, HELD (at q_prev) or CLIPPED."""
        q_safe = q_new.copy()
        changed = np.zeros(len(rows), dtype=int)
        for k in range(len(rows)):
            new = violation(k, q_new[k])
            if new == 0.0:
                continue
            i = int(rows[k])
            prev = violation(k, q_prev[k])
            if prev > 0.0:  # already outside (e.g. started there): only steps that go back toward the allowed set pass
                if new < prev:
                    continue
                self.intervene(i, texts[0], reasons)
                q_safe[k], changed[k] = q_prev[k], HELD
                continue
            if self.config.workspace_mode == "reject":
                self.intervene(i, texts[1], reasons)
                q_safe[k], changed[k] = q_prev[k], HELD
                continue
            lo, hi = 0.0, 1.0  # largest fraction of the step that stays inside
            for _ in range(bisections):
                mid = (lo + hi) / 2
                if violation(k, q_prev[k] + mid * (q_new[k] - q_prev[k])) > 0.0:
                    hi = mid
                else:
                    lo = mid
            self.intervene(i, texts[2], reasons)
            q_safe[k], changed[k] = q_prev[k] + lo * (q_new[k] - q_prev[k]), CLIPPED
        return q_safe, changed
