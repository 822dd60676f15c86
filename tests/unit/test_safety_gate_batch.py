"""GateBatch (the gate's rules for N robots at once, used in training) against N deployed SafetyGates fed the same
random and adversarial inputs: same setpoints, interventions, refusals and collision reports, tick for tick."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.control.commands import CommandError
from dexstack.robot import load_description
from dexstack.safety.gate import SafetyGate, load_safety_config
from dexstack.safety.gate_batch import TAKEN, GateBatch, PartFilters

TICK_S = 0.01


@pytest.fixture(scope="module")
def D():
    return load_description("panda_allegro")


def events(D, rng: np.random.Generator, n_ticks: int, wild: bool = True) -> list[dict]:
    """One robot's inputs, tick by tick, relative to where the robot is (``Robot``): policy-like commands with
    adversarial ones mixed in: targets into the table and the arm, outside the limits (slightly: clamped; far:
    refused), jumps, planned multi-point trajectories, stale streams and state, lagging state, late ticks, e-stops.
    ``wild=False``: no commands to random places (the robot stays out of self-collision and meets the table)."""
    lim = D.limit_arrays()
    lo, hi = lim["lower"], lim["upper"]
    n, n_arm = len(D.joints), len(D.arm_joints)
    out, now, blackout = [], 1.0, 3  # commands before the first state, then state with gaps
    down, down_left = None, 0
    for _ in range(n_ticks):
        e: dict = {}
        now += TICK_S * (rng.choice([2, 3, 12]) if rng.random() < 0.05 else 1) + rng.normal(0, 1e-4)
        blackout = max(blackout - 1, 0) if rng.random() > 0.005 else 60  # 60 ticks without state: stale
        if rng.random() > 0.03 and not blackout:
            e["state"] = rng.normal(0, 0.01, n) + (rng.normal(0, 0.4, n) if rng.random() < 0.02 and wild else 0.0)
        if down_left == 0 and rng.random() < 0.05:  # stream a target into the table for a while: the shoulder
            down = np.full(n, np.nan)  # down from home, the rest where the robot is
            down[1] = D.home()[1] + rng.uniform(1.3, 2.0)
            down_left = int(rng.integers(150, 300))
        if down_left:
            down_left -= 1
            e["target"], e["arm"], e["hand"] = ("down", down), (np.zeros((1, n_arm)), np.array([0.05])), True
        elif rng.random() < 0.3:
            kind = rng.random() if wild else 1.0
            target = ("rel", rng.normal(0, 0.05, n))
            if kind < 0.1:
                target = ("abs", rng.uniform(lo, hi))  # anywhere: the table, the arm itself, big steps
            elif kind < 0.15:
                target = ("abs", hi + rng.uniform(0.0, 0.5, n))  # outside: clamped, or refused beyond 0.3 rad
            elif kind < 0.2:
                target = ("rel", rng.choice([-1, 1], n) * 3.2)  # a jump: refused
            e["target"] = target
            if rng.random() < 0.15:  # a planned trajectory, several points
                k = int(rng.integers(2, 5))
                e["arm"] = (rng.normal(0, 0.05, (k, n_arm)) * np.arange(k)[:, None],
                            np.cumsum(rng.uniform(0.05, 0.6, k)))
            elif rng.random() < 0.9:
                e["arm"] = (np.zeros((1, n_arm)), np.array([0.05 if rng.random() < 0.9 else 0.0]))
            if rng.random() < 0.9:
                e["hand"] = True
        if rng.random() < 0.004:
            e["estop"] = True
        if rng.random() < 0.05:
            e["reset"] = True
        e["now"] = now
        out.append(e)
    return out


class Robot:
    """Where the robot is: it follows the gate's outputs part by part (a lagging servo)."""

    def __init__(self, D):
        self.q, self.n_arm = D.home().astype(float), len(D.arm_joints)
        lim = D.limit_arrays()
        self.lo, self.hi = lim["lower"] - 1.0, lim["upper"] + 1.0

    def inputs(self, e: dict) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(state, arm points, hand target) of event ``e`` at the robot's position."""
        state = self.q + e["state"] if "state" in e else None
        if "target" not in e:
            return state, None, None
        mode, vec = e["target"]
        target = {"rel": self.q + vec, "abs": vec, "down": np.where(np.isnan(vec), self.q, vec)}[mode]
        target = np.clip(target, self.lo, self.hi)
        arm = target[None, : self.n_arm] + e["arm"][0] if "arm" in e else None
        return state, arm, target[self.n_arm:] if e.get("hand") else None

    def follow(self, arm: np.ndarray | None, hand: np.ndarray | None) -> None:
        if arm is not None:
            self.q[: self.n_arm] += 0.7 * (arm - self.q[: self.n_arm])
        if hand is not None:
            self.q[self.n_arm:] += 0.7 * (hand - self.q[self.n_arm:])


def run_scalar(gate, D, evs: list[dict]) -> list[dict]:
    robot, trace = Robot(D), []
    for e in evs:
        step: dict = {}
        now = e["now"]
        state, arm, hand = robot.inputs(e)
        if state is not None:
            gate.update_state(state, now)
        if e.get("estop"):
            gate.estop("test")
        if e.get("reset"):
            step["reset"] = gate.reset(now)[0]
        if arm is not None:
            try:
                gate.arm_command(D.arm_joints, arm, e["arm"][1], now)
                step["arm_taken"] = True
            except CommandError as exc:
                step["arm_taken"] = str(exc)
        if hand is not None:
            try:
                gate.hand_command(hand, now)
                step["hand_taken"] = True
            except CommandError as exc:
                step["hand_taken"] = str(exc)
        out = gate.tick(now)
        robot.follow(out.arm_rad, out.hand_rad)
        step.update(arm=out.arm_rad, hand=out.hand_rad, interventions=list(out.interventions),
                    horizon=out.horizon_s, collisions=list(gate.last_collisions))
        trace.append(step)
    return trace


def run_batch(batch: GateBatch, D, streams: list[list[dict]]) -> list[list[dict]]:
    """Every row's stream through one GateBatch: inputs row by row (their shapes differ), ticks all rows at once."""
    N = len(streams)
    robots = [Robot(D) for _ in range(N)]
    traces: list[list[dict]] = [[] for _ in range(N)]
    for t in range(len(streams[0])):
        now = np.array([s[t]["now"] for s in streams])
        steps: list[dict] = [{} for _ in range(N)]
        for i, s in enumerate(streams):
            e, row = s[t], np.array([i])
            state, arm, hand = robots[i].inputs(e)
            if state is not None:
                batch.update_state(row, state[None], now[i:i + 1])
            if e.get("estop"):
                batch.estop(row, "test")
            if e.get("reset"):
                steps[i]["reset"] = bool(batch.reset(row, now[i:i + 1])[0])
            if arm is not None:
                steps[i]["arm_taken"] = int(batch.arm_command(row, e["arm"][1], arm[None], now[i:i + 1])[0])
            if hand is not None:
                steps[i]["hand_taken"] = int(batch.hand_command(row, hand[None], now[i:i + 1])[0])
        out = batch.tick(now)
        for i in range(N):
            arm, hand = (out.arm_rad[i] if out.arm_valid[i] else None), (out.hand_rad[i] if out.hand_valid[i] else None)
            robots[i].follow(arm, hand)
            steps[i].update(arm=arm, hand=hand, interventions=out.interventions[i], horizon=out.horizon_s[i],
                            collisions=list(batch.last_collisions[i]))
            traces[i].append(steps[i])
    return traces


def assert_same(a: list[dict], b: list[dict], atol: float = 1e-9) -> None:
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys(), t
        for key in x:
            if key in ("arm", "hand"):
                assert (x[key] is None) == (y[key] is None), (t, key)
                if x[key] is not None:
                    np.testing.assert_allclose(x[key], y[key], rtol=0, atol=atol, err_msg=f"tick {t} {key}")
            elif key == "horizon":
                assert x[key] == pytest.approx(y[key], abs=1e-12), t
            elif key.endswith("_taken") and (isinstance(x[key], int) or isinstance(y[key], int)):
                assert (x[key] is True or x[key] == TAKEN) == (y[key] is True or y[key] == TAKEN), (t, key)
            else:
                assert x[key] == y[key], (t, key, x[key], y[key])


BOXES = {"deployed": {}, "open": dict(workspace_min_m=(-100.0,) * 3, workspace_max_m=(100.0,) * 3),
         "low_floor_reject": dict(workspace_min_m=(-0.2, -0.7, 0.2), workspace_mode="reject"),
         "low_floor": dict(workspace_min_m=(-0.2, -0.7, 0.2))}


@pytest.mark.parametrize("workspace", ["deployed", "low_floor"])
def test_batch_rows_compute_what_single_gates_compute(D, workspace):
    config = load_safety_config(**BOXES[workspace])
    rng = np.random.default_rng(len(workspace))
    streams = [events(D, rng, 350, wild=k % 2 == 0) for k in range(4)]
    singles = [run_scalar(SafetyGate(D, config), D, s) for s in streams]
    batch = GateBatch(D, config, len(streams))
    batched = run_batch(batch, D, streams)
    for single, rows in zip(singles, batched):
        assert_same(single, rows)
    # the streams exercised what they are for
    seen = {r for trace in singles for step in trace for r in step["interventions"]}
    assert any(r.startswith("collision:") for r in seen), seen
    assert any("clamped" in r for r in seen) and any(r.startswith("watchdog") for r in seen), seen
    assert any("far from setpoint" in r for r in seen), seen
    refusals = [step["arm_taken"] for trace in singles for step in trace if "arm_taken" in step]
    assert True in refusals and any("refused" in str(r) for r in refusals)
    if workspace == "low_floor":
        assert "workspace: step clipped at the box boundary" in seen, seen


def test_training_pattern_in_one_call_per_period(D):
    """How the CPU backend drives it: every row's one-point command in one call, 5 ticks per period; the box open
    (``gate='limits'``: its forward kinematics skipped as unable to fire)."""
    config = load_safety_config(**BOXES["open"])
    N, n_arm = 5, len(D.arm_joints)
    rng = np.random.default_rng(11)
    lim = D.limit_arrays()
    q = np.tile(D.home(), (N, 1)).astype(float)
    gates = [SafetyGate(D, config) for _ in range(N)]
    batch = GateBatch(D, config, N)
    now = np.linspace(1.0, 2.0, N)
    rows = np.arange(N)
    for period in range(40):
        targets = q + rng.normal(0, 0.08, q.shape)
        targets[rng.random(N) < 0.1] = lim["upper"] + 0.5  # refused whole
        if period % 13 == 12:
            targets[:, 1] = 1.5  # down toward the table
        batch.update_state(rows, q, now)
        verdict = batch.arm_command(rows, np.array([0.05]), targets[:, None, :n_arm], now)
        taken = rows[verdict == TAKEN]
        batch.hand_command(taken, targets[taken, n_arm:], now[taken])
        outs = []
        for k, gate in enumerate(gates):
            gate.update_state(q[k], now[k])
            try:
                gate.arm_command(D.arm_joints, [targets[k, :n_arm]], [0.05], now[k])
                gate.hand_command(targets[k, n_arm:], now[k])
                assert verdict[k] == TAKEN
            except CommandError:
                assert verdict[k] != TAKEN
        for tick in range(5):
            b = batch.tick(now + tick * TICK_S)
            outs = [g.tick(now[k] + tick * TICK_S) for k, g in enumerate(gates)]
            for k, out in enumerate(outs):
                assert b.arm_valid[k] == (out.arm_rad is not None) and b.hand_valid[k] == (out.hand_rad is not None)
                if b.arm_valid[k]:
                    np.testing.assert_allclose(b.arm_rad[k], out.arm_rad, rtol=0, atol=1e-9)
                if b.hand_valid[k]:
                    np.testing.assert_allclose(b.hand_rad[k], out.hand_rad, rtol=0, atol=1e-9)
                assert b.interventions[k] == out.interventions
        q = np.where(np.concatenate([np.repeat(b.arm_valid[:, None], n_arm, 1),
                                     np.repeat(b.hand_valid[:, None], q.shape[1] - n_arm, 1)], axis=1),
                     np.concatenate([b.arm_rad, b.hand_rad], axis=1), q) + rng.normal(0, 0.005, q.shape)
        now = now + 0.05
    for k, gate in enumerate(gates):
        assert batch.counters[k].counts() == gate.interventions.counts()



def test_vectorised_arm_reference_samples_what_each_follower_samples(D):
    """The arm references are sampled for all rows at once where each is one segment; the values must be the
    followers' own, bit for bit, at and around every knot (one-point commands, zero-time ones, planned ones)."""
    rng = np.random.default_rng(3)
    N, n_arm = 12, len(D.arm_joints)
    batch = GateBatch(D, load_safety_config(), N)
    rows = np.arange(N)
    batch.update_state(rows, np.tile(D.home(), (N, 1)), np.zeros(N))
    now, paths = np.zeros(N), set()
    for _ in range(40):
        now = now + rng.choice([0.01, 0.02, 0.05], N)
        sel = rows[rng.random(N) < 0.6]
        for i in sel:
            kind = rng.random()
            planned = np.cumsum(rng.uniform(0.02, 0.2, int(rng.integers(2, 4))))
            times = (np.array([0.05]) if kind < 0.6 else np.array([0.0]) if kind < 0.7 else
                     np.array([0.0, 0.0]) if kind < 0.75 else planned)
            points = D.home()[:n_arm] + rng.normal(0, 0.02, (len(times), n_arm))
            batch.accept_arm(np.array([i]), times, points[None], now[i:i + 1])
        live = rows[batch.arm_ref_valid]
        paths |= set(batch._seg_ok[live].tolist())
        for t in (now[live], now[live] + 0.005, now[live] + 0.05, now[live] + 0.3,
                  np.array([batch.arm_ref[i].knots[0][-1] for i in live])):
            expected = np.array([batch.arm_ref[i].sample(ti) for i, ti in zip(live, t)])
            np.testing.assert_array_equal(batch._sample_arm_ref(live, t), expected)
    assert paths == {True, False}  # both paths ran



@pytest.mark.parametrize("n_dof, bad, cause", [
    (7, np.nan, "RuckigError: [ruckig] target position nan of DoF 0 should be a valid number."),
    (7, 1e9, "RuckigError: [ruckig] error in step 1, dof: 0"),  # without the input dump that follows it
    (2, 1e5, "ruckig result -101 is not a valid Result."),  # a code the binding's enum lacks: it raises ValueError
])
def test_a_filter_step_ruckig_cannot_take_holds_and_names_the_cause(n_dof, bad, cause):
    """The filter never raises out of a tick: a step ruckig refuses holds the row where it is (at rest) and the
    intervention says why (it read "(None)" before, which hid the cause of a hold seen on the launched graph)."""
    filters = PartFilters(1, np.full(n_dof, -np.inf), np.full(n_dof, np.inf), np.ones(n_dof), 5.0, 50.0, TICK_S)
    filters.seed(np.array([0]), np.zeros((1, n_dof)))
    assert filters.step_row(0, [0.1] * n_dof, None) == (True, None)
    moved = filters.position[0].copy()
    assert np.all(moved > 0.0)
    ok, result = filters.step_row(0, [bad] + [0.0] * (n_dof - 1), None)
    assert not ok and result == cause
    np.testing.assert_array_equal(filters.position[0], moved)  # held where it was
    assert filters.step_row(0, [0.0] * n_dof, None) == (True, None)  # and the next valid target is followed
