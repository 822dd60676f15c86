"""The deployed command loop replayed in one process, deterministically: the policy runtime at its control rate, the
pure safety gate (``config/safety.yaml``) ticked at its own rate with the measured joint state every tick (as
``safety_monitor`` sees ``/joint_states``), the gate's outputs driving the MuJoCo cell (arm ramped over the tick,
hand stepped, as ``sim_cell``'s drivers do), and the policy held after its reference's end.

What it leaves out of the deployed graph: DDS latency and jitter, perception (the object pose is the simulator's),
separate clocks. So a difference between :func:`~dexstack.policies.tracking.env.evaluate` and this loop is the gate
and the command semantics; a difference between this loop and :func:`~dexstack.evaluation.deployed.run_deployed`
is timing and perception. Used to find the first divergence of a deployed run (issue 17): per control step it
records the commanded, gated and measured joints and the gate's interventions.

    from dexstack.evaluation.ticked import run_ticked
    trace = run_ticked(policy, reference, hold_s=5.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dexstack.control.commands import CommandError
from dexstack.policies.observation import RobotState
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.runtime import PolicyRuntime
from dexstack.policies.tracking.env import TrackingTask
from dexstack.safety.gate import SafetyConfig, SafetyGate, load_safety_config


@dataclass
class TickedTrace:
    """Per control step (t = period, 2 period, ...): the policy's targets, the gate's last output, the measured
    joints and the object pose after the step; the gate's interventions by reason; the tracking result."""

    t_s: list[float] = field(default_factory=list)
    commanded: list[np.ndarray] = field(default_factory=list)  # full joint vector the policy asked for
    gated: list[np.ndarray] = field(default_factory=list)  # what the gate sent the drivers last
    measured: list[np.ndarray] = field(default_factory=list)
    object_pose: list[np.ndarray] = field(default_factory=list)
    interventions: list[list[str]] = field(default_factory=list)  # reasons during each control step
    counts: dict[str, int] = field(default_factory=dict)
    success: bool = False
    max_position_error_m: float = float("nan")
    final_position_error_m: float = float("nan")
    final_rotation_error_rad: float = float("nan")
    hold_max_error_m: float = float("nan")  # object vs the reference's end pose during the hold

    def first_gate_change(self, tol_rad: float = 1e-3) -> float | None:
        """Time of the first control step whose gated output differs from the command by more than ``tol_rad``
        (filter lag included), or None."""
        for t, c, g in zip(self.t_s, self.commanded, self.gated):
            if np.max(np.abs(c - g)) > tol_rad:
                return t
        return None


class TickedCell:
    """The MuJoCo cell behind the pure safety gate ticked at its own rate, with the ``reset / command / advance /
    observe`` interface of :class:`~dexstack.policies.tracking.physics.CellBackend`: a policy's ``command`` goes to
    the gate as the ``safety_monitor`` gets it (measured state first, arm as a one-point trajectory of one control
    period, hand positions), ``advance`` ticks the gate with the measured state every tick and drives the cell with
    its outputs (arm ramped over the tick, hand stepped). A command the gate refuses is ignored (the robot keeps the
    gate's last output), as the node does. So :func:`~dexstack.policies.tracking.env.evaluate` or a data collector
    given a ``TickedCell`` runs the deployed command path."""

    def __init__(self, backend=None, safety: SafetyConfig | None = None):
        if backend is None:
            from dexstack.policies.tracking.physics import CellBackend

            backend = CellBackend()
        self.backend = backend
        self.description = backend.description
        self.safety = safety or load_safety_config()
        self.tick_s = 1.0 / self.safety.rate_hz
        self.n_arm = len(self.description.arm_joints)
        self.gate: SafetyGate | None = None
        self.gated = np.zeros(len(self.description.joints))
        self.reasons: list[str] = []  # the gate's interventions during the last advance (and command)
        self.refusals = 0
        self._t = 0.0

    @property
    def timestep_s(self) -> float:
        return self.backend.timestep_s

    @property
    def now_s(self) -> float:
        """Gate clock: it never starts at 0 on a robot either."""
        return 1.0 + self._t

    def reset(self, q: np.ndarray, object_pose: np.ndarray, friction_scale: float = 1.0,
              mass_scale: float = 1.0) -> None:
        self.backend.reset(q, object_pose, friction_scale, mass_scale)
        self.gate = SafetyGate(self.description, self.safety)  # a fresh gate per episode: no filter state carried
        self._t = 0.0
        self.gated = np.asarray(q, dtype=float).copy()
        self.reasons, self.refusals = [], 0

    def command(self, arm: np.ndarray | None, hand: np.ndarray | None, horizon_s: float) -> None:
        gate = self.gate
        gate.update_state(self.backend.observe()[0], self.now_s)
        self.reasons = []
        for part, send in (("arm", arm), ("hand", hand)):
            if send is None:
                continue
            try:
                if part == "arm":
                    gate.arm_command(self.description.arm_joints, [send], [horizon_s], self.now_s)
                else:
                    gate.hand_command(send, self.now_s)
            except CommandError as exc:
                self.refusals += 1
                self.reasons.append(f"{part}: refused: {exc}")

    def advance(self, duration_s: float) -> None:
        ticks = int(round(duration_s / self.tick_s))
        if ticks < 1 or abs(ticks * self.tick_s - duration_s) > 1e-9:
            raise ValueError(f"advance by {duration_s} s: not a multiple of the gate's tick {self.tick_s} s")
        gate, backend = self.gate, self.backend
        for k in range(ticks):
            now = self.now_s + k * self.tick_s
            gate.update_state(backend.observe()[0], now)
            out = gate.tick(now)
            self.reasons += out.interventions
            if out.arm_rad is not None:
                self.gated[: self.n_arm] = out.arm_rad
            if out.hand_rad is not None:
                self.gated[self.n_arm:] = out.hand_rad
            backend.command(out.arm_rad, out.hand_rad, max(out.horizon_s, self.tick_s))
            backend.advance(self.tick_s)
        self._t += duration_s

    def observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.backend.observe()


def run_ticked(policy, reference: ReferenceTrajectory, backend=None, safety: SafetyConfig | None = None,
               hold_s: float = 0.0) -> TickedTrace:
    """Run ``policy`` on ``reference`` from its start (robot at the reference's first sample, object at its start)
    through the gate for the reference's duration + ``hold_s``; the reference is scored as ``evaluate`` does."""
    cell = backend if isinstance(backend, TickedCell) else TickedCell(backend, safety)
    description = cell.description
    period_s = policy.manifest.period_s
    ticks = int(round(period_s / cell.tick_s))
    if ticks < 1 or abs(ticks * cell.tick_s - period_s) > 1e-9:
        raise ValueError(f"the control period {period_s} s is not a multiple of the gate's tick {cell.tick_s} s")
    runtime = PolicyRuntime(description)
    policy.reference = reference
    runtime.stage(policy)
    task = TrackingTask(reference)
    cell.reset(reference.q_at(0.0), reference.object_pose_at(0.0))
    n_arm = cell.n_arm
    trace = TickedTrace()
    end_pose = reference.object_pose_at(reference.duration_s)
    hold_err = 0.0
    t = 0.0
    while t < reference.duration_s + hold_s - 1e-9:
        q, dq, obj = cell.observe()
        targets = runtime.step(RobotState(q=q, dq=dq, object_pose=obj), t)
        commanded = cell.gated.copy() if targets is None else targets.full(cell.gated, n_arm)
        reasons: list[str] = []
        if targets is not None:
            cell.command(targets.arm, targets.hand, period_s)
            reasons += cell.reasons
        cell.advance(period_s)
        reasons += cell.reasons
        t += period_s
        q, _, obj = cell.observe()
        trace.t_s.append(t)
        trace.commanded.append(commanded)
        trace.gated.append(cell.gated.copy())
        trace.measured.append(q)
        trace.object_pose.append(obj)
        trace.interventions.append(reasons)
        if t <= reference.duration_s + 1e-9:
            task.step(q, obj, t, np.zeros(1))
        else:
            hold_err = max(hold_err, float(np.linalg.norm(obj[:3] - end_pose[:3])))
    trace.counts = cell.gate.interventions.counts()
    trace.success = task.success()
    trace.max_position_error_m, trace.final_position_error_m = task.max_pos_err, task.last_pos_err
    trace.final_rotation_error_rad = task.last_rot_err
    trace.hold_max_error_m = hold_err if hold_s > 0 else float("nan")
    return trace
