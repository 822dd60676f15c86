"""Fast CPU physics backend of the tracking task: N MuJoCo cells per process behind the deployed command path.

Per control period and environment, what the deployed graph does to a policy command, at the same rates:

1. the ``policy`` node's command (a one-point arm trajectory reaching the target after one period, hand positions)
   goes through the safety gate's rules (:class:`dexstack.safety.gate_batch.GateBatch`: ``safety_monitor``'s
   :class:`~dexstack.safety.gate.SafetyGate` is the same rules for one robot; configured from
   ``config/safety.yaml``), all N environments at once, ticked at its ``rate_hz`` (100 Hz: 5 ticks per 50 ms
   period): joint-limit margin, jerk-limited filter (ruckig), workspace box, self/table collisions;
2. each gate output reaches ``sim_cell``'s driver as ``safety_monitor`` sends it: the arm ramps linearly from its
   current setpoint to the output over the tick (joint_trajectory_controller), the hand steps;
3. the physics of those setpoints runs in C: the whole period's per-physics-step controls are one array and one
   ``mujoco.rollout`` call steps all N environments (no Python per physics step);
4. observations are delayed (joint states and object pose, separately randomised latency) and the object pose
   is sometimes not refreshed (perception drops frames), taken from the rollout's per-step states.

The gate sees the measured state once per control period (``safety_monitor`` gets ``/joint_states`` at 250 Hz; it
only uses it to seed its filter and re-seed it beyond ``max_tracking_error_rad``, so the difference is small).
:class:`WorkerPool` runs slices of the N environments in worker processes on shared-memory arrays.

Physics timestep: ``DEFAULT_TIMESTEP_S`` was chosen by measurement (``bench/train_throughput.py --timestep-sweep``
and README "Training at scale": stability and tracking error of a replayed reference vs the cell's 1 ms).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
from dataclasses import dataclass, replace
from multiprocessing import shared_memory

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from mujoco import rollout  # noqa: E402

from dexstack.control.commands import CommandError, validate_positions, validate_trajectory  # noqa: E402
from dexstack.safety.gate import SafetyConfig, load_safety_config  # noqa: E402
from dexstack.safety.gate_batch import TAKEN, GateBatch  # noqa: E402
from dexstack.sim import SimCell  # noqa: E402
from dexstack.sim.scene import OBJECT_JOINT  # noqa: E402

DEFAULT_TIMESTEP_S = 0.005
GATE_MODES = ("full", "limits", "off")
OPEN_WORKSPACE_M = ((-100.0, -100.0, -100.0), (100.0, 100.0, 100.0))  # a box the robot cannot leave: the gate
# skips its forward kinematics (GateBatch: the box holds the robot's reach)


@dataclass(frozen=True)
class CommandPath:
    """How commands and observations travel between the policy and the physics."""

    # "full": through the safety gate at its rate, configured as config/safety.yaml (joint-limit margin, jerk-limited
    # filter, workspace box, collisions); "limits": the same gate with the workspace box opened (the table and
    # self-collision checks stay; the box's forward kinematics per tick goes); "off": targets straight to the driver.
    gate: str = "limits"
    timestep_s: float = DEFAULT_TIMESTEP_S
    joint_latency_s: tuple[float, float] = (0.0, 0.008)  # uniform per step: /joint_states age at the policy tick
    object_latency_s: tuple[float, float] = (0.0, 0.06)  # object pose age (camera frame interval + perception)
    object_drop_prob: float = 0.2  # a period without a fresh object pose (object_pose publishes ~11 of 15 Hz)
    # 0: each period dropped independently; > 0: the mean length (periods) of a run of dropped periods, same fraction
    # overall (a Markov chain): perception loses the cube for a while when the hand covers it, not one frame at a time
    object_drop_burst_periods: float = 0.0

    def __post_init__(self) -> None:
        if self.gate not in GATE_MODES:
            raise ValueError(f"gate must be one of {GATE_MODES}, got {self.gate!r}")
        if not 0 < self.timestep_s <= 0.01:
            raise ValueError(f"timestep_s must be in (0, 0.01], got {self.timestep_s}")
        for name in ("joint_latency_s", "object_latency_s"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be 0 <= low <= high, got {(lo, hi)}")
        if not 0 <= self.object_drop_prob < 1:
            raise ValueError("object_drop_prob must be in [0, 1)")
        if not (self.object_drop_burst_periods == 0 or 1 <= self.object_drop_burst_periods <= 1000):
            raise ValueError(f"object_drop_burst_periods must be 0 (independent drops) or in [1, 1000], got "
                             f"{self.object_drop_burst_periods}")
        if self.object_drop_burst_periods and self.object_drop_prob > 0.5:
            raise ValueError("bursts of object-pose drops need object_drop_prob <= 0.5")

    def drop_transition(self) -> tuple[float, float]:
        """(P(dropped | dropped the period before), P(dropped | fresh the period before)): stationary fraction
        ``object_drop_prob``, mean run ``object_drop_burst_periods`` (independent drops: both = the fraction)."""
        f = self.object_drop_prob
        if not self.object_drop_burst_periods:
            return f, f
        stay = 1.0 - 1.0 / self.object_drop_burst_periods
        return stay, f * (1.0 - stay) / (1.0 - f)

    @staticmethod
    def ideal(gate: str = "limits", timestep_s: float = DEFAULT_TIMESTEP_S) -> CommandPath:
        """No latency, no drops (evaluation)."""
        return CommandPath(gate, timestep_s, (0.0, 0.0), (0.0, 0.0), 0.0)


def next_drops(path: CommandPath, dropping: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which envs get no fresh object pose this period, given which got none the period before."""
    if not path.object_drop_burst_periods:
        return rng.random(len(dropping)) < path.object_drop_prob
    stay, start = path.drop_transition()
    return rng.random(len(dropping)) < np.where(dropping, stay, start)


OUTPUTS = ("q", "dq", "object_pose", "q_obs", "dq_obs", "object_pose_obs", "unstable")


class MujocoBatch:
    """N cells in this process. ``reset(ids, q, object_pose, friction_scale, mass_scale)``, ``step(targets)``."""

    def __init__(self, n_envs: int, period_s: float, path: CommandPath | None = None, cell: str = "tabletop",
                 seed: int = 0, safety: SafetyConfig | None = None):
        self.path = path or CommandPath()
        sim = SimCell(cell, with_camera=False)
        self.description = d = sim.description
        model = sim.model
        model.opt.timestep = self.path.timestep_s
        self.n_envs, self.period_s = n_envs, period_s
        self.nstep = int(round(period_s / model.opt.timestep))
        if abs(self.nstep * model.opt.timestep - period_s) > 1e-9:
            raise ValueError(f"the control period {period_s} s is not a multiple of the timestep {model.opt.timestep}")
        self.models = [copy.copy(model) for _ in range(n_envs)]  # per-env friction and mass
        self.scratch = mujoco.MjData(model)
        self.thread_data = [mujoco.MjData(model)]
        self.n_arm, self.n = len(d.arm_joints), len(d.joints)
        self.qpos_adr = qpos_adr = np.array([model.joint(j).qposadr[0] for j in d.joints])
        dof_adr = np.array([model.joint(j).dofadr[0] for j in d.joints])
        self.act_ids = np.array([model.actuator(j).id for j in d.joints])
        obj_qpos = model.joint(OBJECT_JOINT).qposadr[0]
        self.obj_qpos = obj_qpos
        self.obj_body = model.body(sim.cell.object.name).id
        self.obj_geom = model.geom(f"{sim.cell.object.name}_geom").id
        self.nominal = (model.geom_friction[self.obj_geom].copy(), float(model.body_mass[self.obj_body]),
                        model.body_inertia[self.obj_body].copy())
        S = mujoco.mjtState
        self.spec = S.mjSTATE_FULLPHYSICS
        self.nstate = mujoco.mj_stateSize(model, self.spec)
        off_qpos = mujoco.mj_stateSize(model, S.mjSTATE_TIME)
        off_qvel = mujoco.mj_stateSize(model, S.mjSTATE_TIME | S.mjSTATE_QPOS)
        self.i_q, self.i_dq = off_qpos + qpos_adr, off_qvel + dof_adr
        self.i_obj = off_qpos + obj_qpos + np.arange(7)
        self.state = np.zeros((n_envs, self.nstate))
        self.setpoint = np.zeros((n_envs, self.n))  # driver setpoints, description order
        self.ctrl = np.tile(self.scratch.ctrl, (n_envs, self.nstep, 1))
        self.obj_hist = np.zeros((n_envs, 2 * self.nstep, 7))  # object poses over the last two periods (xyzw)
        self.last_obj_obs = np.zeros((n_envs, 7))
        self.dropping = np.zeros(n_envs, dtype=bool)  # the object pose was not refreshed last period
        self.rng = np.random.default_rng(seed)
        self.safety = safety or load_safety_config()
        if self.path.gate == "limits":
            self.safety = replace(self.safety, workspace_min_m=OPEN_WORKSPACE_M[0], workspace_max_m=OPEN_WORKSPACE_M[1])
        self.gate = GateBatch(d, self.safety, n_envs) if self.path.gate != "off" else None
        self.tick_s = 1.0 / self.safety.rate_hz
        self.n_ticks = int(round(period_s / self.tick_s)) if self.gate else 1
        self.per_tick = self.nstep // self.n_ticks
        if self.per_tick * self.n_ticks != self.nstep:
            raise ValueError(f"the gate's {self.tick_s} s tick is not a multiple of the timestep {model.opt.timestep}")
        self.now_s = np.zeros(n_envs)  # each env's monotonic gate clock (never reset: the gate's tick spacing)
        self.out = {k: np.zeros(_width(k, self.n, n_envs)) for k in OUTPUTS}
        self.unstable_count = 0
        self.refused_count = 0

    # ------------------------------------------------------------------ reset
    def reset(self, ids: np.ndarray, q: np.ndarray, object_pose: np.ndarray, friction_scale: np.ndarray,
              mass_scale: np.ndarray) -> None:
        friction, mass, inertia = self.nominal
        ids = np.asarray(ids, dtype=int)
        for k, i in enumerate(ids):
            m = self.models[i]
            m.geom_friction[self.obj_geom] = friction * np.array([friction_scale[k], 1.0, 1.0])
            m.body_mass[self.obj_body] = mass * mass_scale[k]
            m.body_inertia[self.obj_body] = inertia * mass_scale[k]
            data = self.scratch
            mujoco.mj_resetData(m, data)
            data.qpos[self.qpos_adr] = q[k]
            x, y, z, qx, qy, qz, qw = object_pose[k]
            data.qpos[self.obj_qpos: self.obj_qpos + 7] = (x, y, z, qw, qx, qy, qz)
            mujoco.mj_getState(m, data, self.state[i], self.spec)
            self.setpoint[i] = q[k]
            self.obj_hist[i] = object_pose[k]
            self.last_obj_obs[i] = object_pose[k]
            self.dropping[i] = False
        reset_outputs(self.out, ids, q, object_pose)
        if self.gate:  # a new episode: the gate forgets its inputs and re-seeds from the measured state
            self.now_s[ids] += 1.0
            self.gate.estop(ids, "episode reset")
            self.gate.update_state(ids, np.asarray(q, dtype=float), self.now_s[ids])
            self.gate.reset(ids, self.now_s[ids])

    # ------------------------------------------------------------------ step
    def _controls(self, targets: np.ndarray) -> None:
        """Fill ``self.ctrl`` (N, nstep, nu) with the driver setpoints of the period (arm ramps, hand steps)."""
        n_arm, per = self.n_arm, self.per_tick
        frac = (np.arange(per) / per)[None, :, None]  # setpoint sampled at each physics step's start
        setpoints = np.empty((self.n_envs, self.nstep, self.n))
        prev = self.setpoint.copy()
        if self.gate:
            now = self.now_s
            self._commands(targets, now)
            for k in range(self.n_ticks):
                out = self.gate.tick(now + k * self.tick_s)
                new = prev.copy()
                new[out.arm_valid, :n_arm] = out.arm_rad[out.arm_valid]
                new[out.hand_valid, n_arm:] = out.hand_rad[out.hand_valid]
                rows = setpoints[:, k * per:(k + 1) * per]
                rows[..., :n_arm] = prev[:, None, :n_arm] + frac * (new[:, None, :n_arm] - prev[:, None, :n_arm])
                rows[..., n_arm:] = new[:, None, n_arm:]
                prev = new
            self.now_s = now + self.period_s
        else:  # the policy's one-point trajectory straight to the driver: a ramp over the period
            new = targets
            setpoints[..., :n_arm] = prev[:, None, :n_arm] + frac * (new[:, None, :n_arm] - prev[:, None, :n_arm])
            setpoints[..., n_arm:] = new[:, None, n_arm:]
            prev = np.array(new, dtype=float)
        self.setpoint[:] = prev
        self.ctrl[:, :, self.act_ids] = setpoints

    def _commands(self, targets: np.ndarray, now: np.ndarray) -> None:
        """The measured state and the policy node's messages of every env to the gate: the arm's one-point
        trajectory, then (if the arm's was taken) the hand's positions. A refused command (absurd or non-finite
        target) leaves the gate holding, as on the deployed path; non-finite ones are refused with the deployed
        validation's reason."""
        n_arm, rows = self.n_arm, np.arange(self.n_envs)
        self.gate.update_state(rows, self.out["q"], now)  # the gate sees the measured state once per period
        finite_arm = np.isfinite(targets[:, :n_arm]).all(axis=1)
        for i in rows[~finite_arm]:
            self._invalid(i, "arm", validate_trajectory, self.description.arm_joints, [targets[i, :n_arm]],
                          [self.period_s], self.description.arm_joints)
        taken = np.zeros(self.n_envs, dtype=bool)
        taken[finite_arm] = self.gate.arm_command(rows[finite_arm], np.array([self.period_s]),
                                                  targets[finite_arm, None, :n_arm], now[finite_arm]) == TAKEN
        finite_hand = np.isfinite(targets[:, n_arm:]).all(axis=1)
        for i in rows[taken & ~finite_hand]:
            self._invalid(i, "hand", validate_positions, targets[i, n_arm:], self.n - n_arm, "hand command")
        hand = rows[taken & finite_hand]
        hand_taken = self.gate.hand_command(hand, targets[hand, n_arm:], now[hand]) == TAKEN
        self.refused_count += int(self.n_envs - hand_taken.sum())

    def _invalid(self, i: int, part: str, validate, *args) -> None:
        try:
            validate(*args)
        except CommandError as exc:
            self.gate.intervene(int(i), f"{part}: {exc}")

    def step(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        """One control period for every env with full joint targets (N, n); returns true and observed states."""
        self._controls(np.asarray(targets, dtype=float))
        return self.step_physics()

    def step_physics(self) -> dict[str, np.ndarray]:
        """Run the period's controls already in ``self.ctrl`` (see :meth:`_controls`) and fill the outputs."""
        t_expected = self.state[:, 0] + self.nstep * self.path.timestep_s
        states, _ = rollout.rollout(self.models, self.thread_data, self.state, self.ctrl)
        self.state[:] = states[:, -1]
        # MuJoCo resets a diverged simulation (warning 'unstable', time back to 0): the episode must end there
        unstable = np.abs(states[:, -1, 0] - t_expected) > 0.5 * self.path.timestep_s
        self.unstable_count += int(unstable.sum())
        self.out["unstable"][:] = unstable
        last = states[:, -1]
        out, p = self.out, self.path
        out["q"][:] = last[:, self.i_q]
        out["dq"][:] = last[:, self.i_dq]
        obj = states[:, :, self.i_obj]  # (N, nstep, 7) wxyz
        obj = np.concatenate([obj[..., :3], obj[..., 4:], obj[..., 3:4]], axis=-1)
        self.obj_hist = np.concatenate([self.obj_hist[:, self.nstep:], obj], axis=1)
        out["object_pose"][:] = obj[:, -1]
        dt, N = self.path.timestep_s, self.n_envs
        lag_j = np.minimum((self.rng.uniform(*p.joint_latency_s, N) / dt).astype(int), self.nstep - 1)
        rows = np.arange(N)
        lagged = states[rows, self.nstep - 1 - lag_j]
        out["q_obs"][:] = lagged[:, self.i_q]
        out["dq_obs"][:] = lagged[:, self.i_dq]
        lag_o = np.minimum((self.rng.uniform(*p.object_latency_s, N) / dt).astype(int), 2 * self.nstep - 1)
        fresh = self.obj_hist[rows, 2 * self.nstep - 1 - lag_o]
        self.dropping = dropped = next_drops(p, self.dropping, self.rng)
        self.last_obj_obs = np.where(dropped[:, None], self.last_obj_obs, fresh)
        out["object_pose_obs"][:] = self.last_obj_obs
        return out


# ---------------------------------------------------------------------------------------------- worker processes
def _width(key: str, n: int, n_envs: int) -> tuple[int, ...]:
    return (n_envs,) if key == "unstable" else (n_envs, 7 if "object" in key else n)


def _shapes(n_envs: int, n: int) -> dict[str, tuple[int, ...]]:
    shapes = {k: _width(k, n, n_envs) for k in OUTPUTS}
    shapes.update(targets=(n_envs, n), reset_q=(n_envs, n), reset_object=(n_envs, 7), reset_scale=(n_envs, 2),
                  reset_mask=(n_envs,))
    return shapes


def _attach(name: str, shapes: dict) -> tuple[shared_memory.SharedMemory, dict[str, np.ndarray]]:
    size = sum(int(np.prod(s)) for s in shapes.values()) * 8
    shm = shared_memory.SharedMemory(name=name) if name else shared_memory.SharedMemory(create=True, size=size)
    arrays, offset = {}, 0
    for key, shape in shapes.items():
        arrays[key] = np.ndarray(shape, dtype=np.float64, buffer=shm.buf, offset=offset)
        offset += int(np.prod(shape)) * 8
    return shm, arrays


def reset_outputs(out: dict[str, np.ndarray], rows: np.ndarray, q: np.ndarray, object_pose: np.ndarray) -> None:
    """What a reset env reports before its first step: at rest at ``q``, the object at ``object_pose``, observed
    exactly (the outputs :meth:`MujocoBatch.reset` writes; :class:`WorkerPool` writes them itself for a reset it
    hands to the workers with the next step)."""
    for key, value in (("q", q), ("q_obs", q), ("object_pose", object_pose), ("object_pose_obs", object_pose)):
        out[key][rows] = value
    for key in ("dq", "dq_obs", "unstable"):
        out[key][rows] = 0.0


def _worker(conn, shm_name: str, shapes: dict, slices: list[tuple[int, int]], period_s: float, path: CommandPath,
            cell: str, seed: int) -> None:
    import torch  # noqa: PLC0415 (workers do no torch work: keep them single-threaded)

    torch.set_num_threads(1)
    shm, a = _attach(shm_name, shapes)
    # one MujocoBatch (and gate) per env group: groups are stepped separately, in the order the pool sends them
    batches = [MujocoBatch(hi - lo, period_s, path, cell, seed + 100 * g) for g, (lo, hi) in enumerate(slices)]
    conn.send("ready")
    try:
        while True:
            command, g = conn.recv()
            if command == "close":
                return
            if command == "step":
                lo, hi = slices[g]
                batch, mask = batches[g], a["reset_mask"][lo:hi]
                ids = np.flatnonzero(mask > 0)
                if ids.size:  # resets the pool took since this group's last step (their outputs are written)
                    batch.reset(ids, a["reset_q"][lo:hi][ids], a["reset_object"][lo:hi][ids],
                                a["reset_scale"][lo:hi][ids, 0], a["reset_scale"][lo:hi][ids, 1])
                    mask[ids] = 0.0
                out = batch.step(a["targets"][lo:hi])
                for key in OUTPUTS:
                    a[key][lo:hi] = out[key]
            conn.send(g)
    finally:
        del a
        shm.close()


class WorkerPool:
    """:class:`MujocoBatch` slices in ``n_workers`` processes; batches travel through shared memory, the pipes only
    carry 'step'. Same interface as MujocoBatch (``reset``, ``step``, ``out``, ``description``).

    ``n_groups`` > 1 splits the envs into groups stepped one after the other (:meth:`group` gives each group the same
    interface, plus ``step_async``/``step_wait``): while the workers step one group, the learner's process computes
    the next actions of the other (double buffering), instead of the workers waiting for the learner each period.
    Every worker holds a slice of every group, so all workers stay busy whichever group is stepping.

    A reset is handed to the workers with the env's next step (a reset sent on its own would queue behind the other
    group's step and make the learner wait for it); the pool writes the reset outputs at once (:func:`reset_outputs`).
    """

    def __init__(self, n_envs: int, period_s: float, n_workers: int = 2, path: CommandPath | None = None,
                 cell: str = "tabletop", seed: int = 0, n_groups: int = 1):
        from dexstack.robot import load_description  # noqa: PLC0415
        from dexstack.sim.config import load_cell_config  # noqa: PLC0415

        if not 1 <= n_groups <= n_envs:
            raise ValueError(f"n_groups must be in [1, n_envs={n_envs}], got {n_groups}")
        self.description = load_description(load_cell_config(cell).robot_profile)
        self.n_envs, n = n_envs, len(self.description.joints)
        self.shapes = _shapes(n_envs, n)
        self.shm, self.a = _attach("", self.shapes)
        self.out = {k: self.a[k] for k in OUTPUTS}
        self.group_bounds = np.linspace(0, n_envs, n_groups + 1).astype(int)
        n_workers = min(n_workers, int(np.diff(self.group_bounds).min()))
        slices = []  # per worker, its (lo, hi) in each group
        for g in range(n_groups):
            b = np.linspace(self.group_bounds[g], self.group_bounds[g + 1], n_workers + 1).astype(int)
            slices.append(list(zip(b[:-1].tolist(), b[1:].tolist())))
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        self._pending: list[int] = []  # groups sent to the workers and not yet waited for, in order
        for w in range(n_workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, self.shm.name, self.shapes, [s[w] for s in slices],
                                                     period_s, path or CommandPath(), cell, seed * 1000 + w),
                               daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise RuntimeError("a physics worker failed to start")
        self.groups = [PoolGroup(self, g) for g in range(n_groups)]

    def group(self, g: int) -> PoolGroup:
        return self.groups[g]

    def reset(self, ids, q, object_pose, friction_scale, mass_scale) -> None:
        a = self.a
        ids = np.asarray(ids, dtype=int)
        a["reset_mask"][ids] = 1.0
        a["reset_q"][ids], a["reset_object"][ids] = q, object_pose
        a["reset_scale"][ids, 0], a["reset_scale"][ids, 1] = friction_scale, mass_scale
        reset_outputs(self.out, ids, q, object_pose)

    def _step_async(self, targets: np.ndarray, g: int) -> None:
        lo, hi = self.group_bounds[g], self.group_bounds[g + 1]
        if g in self._pending:
            raise RuntimeError(f"group {g} is already stepping")
        self.a["targets"][lo:hi] = targets
        for conn in self.conns:
            conn.send(("step", g))
        self._pending.append(g)

    def _step_wait(self, g: int) -> None:
        """Wait for group ``g``'s step (and those sent before it: each worker answers in order)."""
        if g not in self._pending:
            raise RuntimeError(f"group {g} is not stepping")
        while True:
            done = self._pending.pop(0)
            for conn in self.conns:
                if conn.recv() != done:
                    raise RuntimeError("a physics worker answered out of order")
            if done == g:
                return

    def step(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        for g in range(len(self.groups)):
            lo, hi = self.group_bounds[g], self.group_bounds[g + 1]
            self._step_async(targets[lo:hi], g)
        for g in range(len(self.groups)):
            self._step_wait(g)
        return self.out

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close", 0))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self.out = {}
        self.a = {}
        for group in self.groups:  # views of the shared memory must go before it closes
            group.out = {}
        self.shm.close()
        self.shm.unlink()


class PoolGroup:
    """Envs ``[lo, hi)`` of a :class:`WorkerPool` as a backend of their own (ids and rows local to the group)."""

    def __init__(self, pool: WorkerPool, g: int):
        self.pool, self.g = pool, g
        self.lo, self.hi = int(pool.group_bounds[g]), int(pool.group_bounds[g + 1])
        self.n_envs, self.description = self.hi - self.lo, pool.description
        self.out = {k: v[self.lo:self.hi] for k, v in pool.out.items()}

    def reset(self, ids, q, object_pose, friction_scale, mass_scale) -> None:
        self.pool.reset(np.asarray(ids, dtype=int) + self.lo, q, object_pose, friction_scale, mass_scale)

    def step_async(self, targets: np.ndarray) -> None:
        self.pool._step_async(targets, self.g)

    def step_wait(self) -> dict[str, np.ndarray]:
        self.pool._step_wait(self.g)
        return self.out

    def step(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        self.step_async(targets)
        return self.step_wait()
