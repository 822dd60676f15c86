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


def run_ticked(policy, reference: ReferenceTrajectory, backend=None, safety: SafetyConfig | None = None,
               hold_s: float = 0.0) -> TickedTrace:
    """Run ``policy`` on ``reference`` from its start (robot at the reference's first sample, object at its start)
    through the gate for the reference's duration + ``hold_s``; the reference is scored as ``evaluate`` does."""
    if backend is None:
        from dexstack.policies.tracking.physics import CellBackend

        backend = CellBackend()
    description = backend.description
    gate = SafetyGate(description, safety or load_safety_config())
    tick_s = 1.0 / gate.config.rate_hz
    period_s = policy.manifest.period_s
    ticks = int(round(period_s / tick_s))
    if ticks < 1 or abs(ticks * tick_s - period_s) > 1e-9:
        raise ValueError(f"the control period {period_s} s is not a multiple of the gate's tick {tick_s} s")
    runtime = PolicyRuntime(description)
    policy.reference = reference
    runtime.stage(policy)
    task = TrackingTask(reference)
    backend.reset(reference.q_at(0.0), reference.object_pose_at(0.0))
    n_arm = len(description.arm_joints)
    trace = TickedTrace()
    end_pose = reference.object_pose_at(reference.duration_s)
    hold_err = 0.0
    gated = np.asarray(reference.q_at(0.0), dtype=float).copy()
    t, t0 = 0.0, 1.0  # gate clock offset: it never starts at 0 on a robot either
    while t < reference.duration_s + hold_s - 1e-9:
        q, dq, obj = backend.observe()
        targets = runtime.step(RobotState(q=q, dq=dq, object_pose=obj), t)
        commanded = gated.copy() if targets is None else targets.full(gated, n_arm)
        if targets is not None:
            gate.update_state(q, t0 + t)
            if targets.arm is not None:
                gate.arm_command(description.arm_joints, [targets.arm], [period_s], t0 + t)
            if targets.hand is not None:
                gate.hand_command(targets.hand, t0 + t)
        reasons: list[str] = []
        for k in range(ticks):
            now = t0 + t + k * tick_s
            gate.update_state(backend.observe()[0], now)
            out = gate.tick(now)
            reasons += out.interventions
            if out.arm_rad is not None:
                gated[:n_arm] = out.arm_rad
            if out.hand_rad is not None:
                gated[n_arm:] = out.hand_rad
            backend.command(out.arm_rad, out.hand_rad, max(out.horizon_s, tick_s))
            backend.advance(tick_s)
        t += period_s
        q, _, obj = backend.observe()
        trace.t_s.append(t)
        trace.commanded.append(commanded)
        trace.gated.append(gated.copy())
        trace.measured.append(q)
        trace.object_pose.append(obj)
        trace.interventions.append(reasons)
        if t <= reference.duration_s + 1e-9:
            task.step(q, obj, t, np.zeros(1))
        else:
            hold_err = max(hold_err, float(np.linalg.norm(obj[:3] - end_pose[:3])))
    trace.counts = gate.interventions.counts()
    trace.success = task.success()
    trace.max_position_error_m, trace.final_position_error_m = task.max_pos_err, task.last_pos_err
    trace.final_rotation_error_rad = task.last_rot_err
    trace.hold_max_error_m = hold_err if hold_s > 0 else float("nan")
    return trace
