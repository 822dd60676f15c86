"""Batched tracking task layer and fast backends: same observations/actions/rewards as the runtime's single-env
definitions, the trained env and the runtime give the same action, the gate in the training loop, workers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dexstack.policies import load_policy, load_reference, reference_path
from dexstack.policies.action import ActionMapper, clip_raw_action
from dexstack.policies.manifest import parse_manifest
from dexstack.policies.observation import ObservationBuilder, RobotState, StepContext
from dexstack.policies.runtime import PolicyRuntime
from dexstack.policies.tracking.cpu_backend import OUTPUTS, CommandPath, MujocoBatch, WorkerPool
from dexstack.policies.tracking.env import TrackingTask as SingleTask
from dexstack.policies.tracking.physics import CellBackend
from dexstack.policies.tracking.ppo import ActorCritic, PPOConfig
from dexstack.policies.tracking.references import HELD_OUT, training_specs, validation_specs
from dexstack.policies.tracking.task import Measured, Randomization, TrackingTask
from dexstack.policies.tracking.trainer import deterministic_actor, export_bundle, tracking_manifest
from dexstack.robot import load_description
from dexstack.safety.gate import load_safety_config

D = load_description("panda_allegro")
N, N_ARM = len(D.joints), len(D.arm_joints)
REFS = [load_reference(reference_path(n), D) for n in ("lift", "push", "rotate")]


def manifest_yaml(clip=1.0, extra=()):
    raw = tracking_manifest(N_ARM, N - N_ARM)
    raw["action"]["clip"] = clip
    raw["observation"] += list(extra)
    return raw


def random_states(rng, k):
    lim = D.limit_arrays()
    q = rng.uniform(lim["lower"], lim["upper"], (k, N))
    dq = rng.normal(0, 0.5, (k, N))
    quat = rng.normal(size=(k, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    obj = np.concatenate([rng.uniform([0.4, -0.1, 0.0], [0.6, 0.1, 0.2], (k, 3)), quat], axis=1)
    return q, dq, obj


def test_batched_observation_equals_the_runtime_builder_field_by_field():
    m = parse_manifest(manifest_yaml(extra=[{"name": "phase", "size": 1}, {"name": "object_quat", "size": 4},
                                            {"name": "object_pos", "size": 3, "offset": 0.5, "scale": 2.0}]))
    task = TrackingTask(m, D, REFS, dtype=torch.float64)
    builder = ObservationBuilder(m, D)
    rng = np.random.default_rng(0)
    k = 6
    q, dq, obj = random_states(rng, k)
    state = task.new_state(k)
    task.reset(state, torch.arange(k), None, ref=torch.tensor([0, 1, 2, 0, 1, 2]),
               t_s=torch.tensor([0.0, 1.3, 3.0, 6.9, 7.99, 12.0], dtype=torch.float64))
    state.last_action = torch.as_tensor(rng.normal(size=(k, N)))
    obs = task.observe(state, Measured(torch.as_tensor(q), torch.as_tensor(dq), torch.as_tensor(obj))).numpy()
    for i in range(k):
        ctx = StepContext(state=RobotState(q=q[i], dq=dq[i], object_pose=obj[i]), t_s=float(state.t_s[i]),
                          period_s=m.period_s, reference=REFS[int(state.ref[i])],
                          last_action=state.last_action[i].numpy())
        np.testing.assert_allclose(obs[i], builder.build(ctx), atol=1e-9)


def test_one_clip_and_one_normaliser_trained_env_and_runtime_give_the_same_action(tmp_path):
    """Same input state -> same joint targets from the training path (task layer + trainer's actor) and from
    the deployed runtime loading the exported bundle; clip 2 (the clip that used to differ) included."""
    raw_manifest = manifest_yaml(clip=2.0)
    m = parse_manifest(raw_manifest)
    task = TrackingTask(m, D, REFS[:1], dtype=torch.float64)
    torch.manual_seed(0)
    model = ActorCritic(task.obs_size, task.action_size, PPOConfig())
    with torch.no_grad():
        model.actor.mu.weight.normal_(0.0, 3.0)  # outputs beyond +-1 so that the clip matters
        model.normalizer.update(torch.randn(64, task.obs_size) * 3 + 1)
    export_bundle(model, tmp_path / "bundle", raw_manifest)
    policy = load_policy(str(tmp_path / "bundle"), D)
    policy.reference = REFS[0]
    runtime = PolicyRuntime(D)
    runtime.stage(policy)
    q, dq, obj = random_states(np.random.default_rng(1), 1)
    # The object within the anchoring dead band of the reference's start, so the runtime tracks the reference as is.
    obj[0, :3] = REFS[0].object_pose_at(0.0)[:3] + 0.002
    t = 0.0  # the runtime's episode clock starts at its first step
    runtime_targets = runtime.step(RobotState(q=q[0], dq=dq[0], object_pose=obj[0]), 100.0)
    state = task.new_state(1)
    task.reset(state, torch.arange(1), None, ref=torch.tensor([0]), t_s=torch.tensor([t], dtype=torch.float64))
    measured = Measured(torch.as_tensor(q), torch.as_tensor(dq), torch.as_tensor(obj))
    obs = task.observe(state, measured)
    with torch.no_grad():
        raw = deterministic_actor(model)(obs).double()
    assert raw.abs().max() > 2.0  # the clip is exercised
    clipped, targets = task.targets(state, measured, raw)
    assert clipped.abs().max() == pytest.approx(2.0)
    np.testing.assert_allclose(np.concatenate([runtime_targets.arm, runtime_targets.hand]), targets[0].numpy(),
                               atol=1e-5)
    # and the numpy/torch clip is one function
    assert np.array_equal(clip_raw_action(np.array([-3.0, 0.5, 3.0]), 2.0), [-2.0, 0.5, 2.0])


def test_batched_actions_match_the_action_mapper_in_every_mode():
    rng = np.random.default_rng(2)
    q, dq, obj = random_states(rng, 4)
    for mode in ("residual", "delta", "absolute"):
        raw_manifest = manifest_yaml(clip=None)
        raw_manifest["action"]["mode"] = mode
        m = parse_manifest(raw_manifest)
        task = TrackingTask(m, D, REFS, dtype=torch.float64)
        mapper = ActionMapper(m.action, D)
        state = task.new_state(4)
        task.reset(state, torch.arange(4), None, ref=torch.tensor([0, 1, 2, 1]),
                   t_s=torch.tensor([3.0, 4.0, 5.0, 7.0], dtype=torch.float64))
        state.last_target = torch.as_tensor(q[::-1].copy())
        raw = rng.normal(0, 2, (4, N))
        _, targets = task.targets(state, Measured(*(torch.as_tensor(x) for x in (q, dq, obj))), torch.as_tensor(raw))
        for i in range(4):
            ctx = StepContext(state=RobotState(q=q[i], dq=dq[i], object_pose=obj[i]), t_s=float(state.t_s[i]),
                              period_s=m.period_s, reference=REFS[int(state.ref[i])],
                              last_target=state.last_target[i].numpy())
            expected = mapper.targets(raw[i], ctx)
            np.testing.assert_allclose(targets[i].numpy(), np.concatenate([expected.arm, expected.hand]), atol=1e-9)


def test_batched_reward_and_success_match_the_single_env_task():
    m = parse_manifest(manifest_yaml())
    task = TrackingTask(m, D, REFS, randomization=Randomization.none(), dtype=torch.float64)
    state = task.new_state(3)
    task.reset(state, torch.arange(3), None, ref=torch.arange(3))
    singles = [SingleTask(ref) for ref in REFS]
    rng = np.random.default_rng(3)
    for _ in range(4):
        q, _, _ = random_states(rng, 3)
        t_next = state.t_s + m.period_s
        ref_obj = np.stack([r.object_pose_at(float(t)) for r, t in zip(REFS, t_next)])
        obj = ref_obj + np.concatenate([rng.normal(0, 0.01, (3, 3)), rng.normal(0, 0.05, (3, 4))], axis=1)
        raw = rng.normal(size=(3, N))
        reward, failed, _ = task.advance(state, Measured(torch.as_tensor(q), torch.zeros(3, N), torch.as_tensor(obj)),
                                         torch.as_tensor(raw), torch.as_tensor(q))
        for i, single in enumerate(singles):
            r, f = single.step(q[i], obj[i], float(t_next[i]), raw[i])
            assert float(reward[i]) == pytest.approx(r, abs=1e-9)
            assert bool(failed[i]) == f
    assert task.success(state).tolist() == [s.success() for s in singles]


def test_gate_off_batch_reproduces_the_single_cell_backend():
    """The rollout backend (no gate, 1 ms) steps the same physics with the same ramp as the old CellBackend."""
    batch = MujocoBatch(2, 0.05, CommandPath.ideal("off", 0.001))
    cell = CellBackend()
    ref = REFS[0]
    t0 = 3.0
    obj0 = ref.object_pose_at(0.0)
    batch.reset(np.arange(2), np.tile(ref.q_at(t0), (2, 1)), np.tile(obj0, (2, 1)), np.ones(2), np.ones(2))
    cell.reset(ref.q_at(t0), obj0)
    for k in range(6):
        target = ref.q_at(t0 + 0.05 * (k + 1)) + 0.05
        out = batch.step(np.tile(target, (2, 1)))
        cell.command(target[:N_ARM], target[N_ARM:], 0.05)
        cell.advance(0.05)
    q, _, obj = cell.observe()
    np.testing.assert_allclose(out["q"][0], q, atol=1e-3)
    np.testing.assert_allclose(out["object_pose"][1, :3], obj[:3], atol=1e-4)


def test_a_diverged_physics_step_ends_only_that_episode_as_failed_and_is_reported():
    """MuJoCo resets a diverged simulation; the env must end that episode as failed with no reward and say why
    (the trainer counts these per iteration: the curves' ``diverged`` column)."""
    from dexstack.policies.tracking.vec_env import VecTrackingEnv

    class Diverging(MujocoBatch):
        def step(self, targets):
            out = super().step(targets)
            out["unstable"][1] = 1.0
            return out

    task = TrackingTask(parse_manifest(manifest_yaml()), D, REFS[:1], dtype=torch.float64,
                        randomization=Randomization.none())
    env = VecTrackingEnv(task, Diverging(2, 0.05, CommandPath.ideal("off")), 2, auto_reset=False)
    env.reset()
    _, reward, done, info = env.step(torch.zeros(2, task.action_size))
    assert info.diverged.tolist() == [False, True]
    assert done.tolist() == [False, True] and info.failed.tolist() == [False, True]
    assert float(reward[1]) == 0.0 and float(reward[0]) > 0.0
    assert not bool(info.success[1])


def test_training_commands_pass_the_safety_gate_limits_and_rate():
    """An absurd target (far outside the limits, a jump) reaches the physics only as the gate lets it: inside the
    joint-limit margin, at most the gate's velocity per tick."""
    safety = load_safety_config()
    batch = MujocoBatch(1, 0.05, CommandPath.ideal("limits", 0.005))
    lim = D.limit_arrays()
    q0 = np.clip(D.home(), lim["lower"] + 0.05, lim["upper"] - 0.05)  # inside the margin: no re-seed jump
    batch.reset(np.array([0]), q0[None], np.array([[0.5, 0.0, 0.025, 0, 0, 0, 1.0]]), np.ones(1), np.ones(1))
    # beyond the limits and a large step, but not absurd (the gate refuses > max_outside_limits_rad or max step)
    target = np.minimum(q0 + 1.0, lim["upper"] + 0.2)
    v_max = safety.velocity_scale * lim["velocity"]
    act = batch.act_ids
    prev = q0
    for _ in range(4):
        batch.step(target[None])
        ctrl = batch.ctrl[0][:, act]  # (nstep, n) setpoints of this period
        steps = np.abs(np.diff(np.vstack([prev, ctrl]), axis=0))
        # the arm ramps at most one tick at v_max per tick (the hand may be re-seeded from the measured state when
        # contact blocks it: the gate's own rule)
        assert np.all(steps[:, :N_ARM] <= v_max[:N_ARM] * batch.tick_s * (1 + 1e-6) + 1e-9)
        assert np.all(ctrl <= lim["upper"] - safety.position_margin_rad + 1e-9)
        prev = ctrl[-1]
    moved = np.abs(prev - q0)
    assert moved[:N_ARM].max() > 0.01  # the arm did move toward the target
    held = batch.setpoint[0].copy()
    batch.step((lim["upper"] + 1.0)[None])  # absurd: refused whole, the gate holds
    assert batch.refused_count == 1
    assert np.abs(batch.setpoint[0] - held)[:N_ARM].max() < 0.05
    ungated = MujocoBatch(1, 0.05, CommandPath.ideal("off", 0.005))
    ungated.reset(np.array([0]), q0[None], np.array([[0.5, 0.0, 0.025, 0, 0, 0, 1.0]]), np.ones(1), np.ones(1))
    ungated.step(np.clip(target, lim["lower"], lim["upper"])[None])
    assert np.abs(ungated.ctrl[0][-1, act] - q0).max() > np.abs(batch.ctrl[0][0, act] - q0).max()


@pytest.mark.parametrize("gate", ["limits", "full"])
def test_batched_gate_sends_what_one_deployed_gate_per_env_sends(gate):
    """The backend's GateBatch against the previous per-env path (one SafetyGate per env, the policy node's messages,
    5 ticks per period, the driver's ramp): the same per-physics-step controls, refusals and interventions, with
    absurd, non-finite and table-bound targets among them."""
    from dexstack.control.commands import CommandError
    from dexstack.safety.gate import SafetyGate

    N, lim = 3, D.limit_arrays()
    batch = MujocoBatch(N, 0.05, CommandPath.ideal(gate, 0.005))
    gates = [SafetyGate(D, batch.safety) for _ in range(N)]
    q = np.tile(np.clip(D.home(), lim["lower"] + 0.05, lim["upper"] - 0.05), (N, 1))
    batch.reset(np.arange(N), q, np.tile([0.5, 0.0, 0.025, 0, 0, 0, 1.0], (N, 1)), np.ones(N), np.ones(N))
    now, setpoint, refused = batch.now_s.copy(), q.copy(), 0
    for i, g in enumerate(gates):  # a new episode, as the backend starts one
        g.estop("episode reset")
        g.update_state(q[i], now[i])
        g.reset(now[i])
    rng = np.random.default_rng(5)
    per, frac = batch.per_tick, (np.arange(batch.per_tick) / batch.per_tick)[:, None]
    for period in range(45):
        targets = setpoint + rng.normal(0.0, 0.1, setpoint.shape)
        if period > 2:
            targets[:, 1] = D.home()[1] + 1.8  # the shoulder down: the hand into the table
        targets[rng.random(N) < 0.1] = lim["upper"] + 1.0  # absurd: refused whole
        targets[rng.random(N) < 0.05, -1] = np.nan  # malformed hand command
        q_meas = setpoint + rng.normal(0.0, 0.01, setpoint.shape)
        batch.out["q"][:] = q_meas
        batch._controls(targets)
        for i, g in enumerate(gates):  # the previous per-env path
            g.update_state(q_meas[i], now[i])
            try:
                g.arm_command(D.arm_joints, [targets[i, :N_ARM]], [0.05], now[i])
                g.hand_command(targets[i, N_ARM:], now[i])
            except CommandError:
                refused += 1
            prev, expect = setpoint[i].copy(), np.empty((batch.nstep, len(D.joints)))
            for k in range(batch.n_ticks):
                out = g.tick(now[i] + k * batch.tick_s)
                new = prev.copy()
                if out.arm_rad is not None:
                    new[:N_ARM] = out.arm_rad
                if out.hand_rad is not None:
                    new[N_ARM:] = out.hand_rad
                expect[k * per:(k + 1) * per, :N_ARM] = prev[:N_ARM] + frac * (new[:N_ARM] - prev[:N_ARM])
                expect[k * per:(k + 1) * per, N_ARM:] = new[N_ARM:]
                prev = new
            np.testing.assert_allclose(batch.ctrl[i][:, batch.act_ids], expect, rtol=0, atol=1e-9)
            setpoint[i] = prev
            now[i] += 0.05
        assert batch.refused_count == refused
    for i, g in enumerate(gates):
        assert batch.gate.counters[i].counts() == g.interventions.counts()
    assert refused > 0 and any(r.startswith("collision") for g in gates for r in g.interventions.counts())


def test_observation_latency_and_drops_come_from_the_rollout_history():
    path = CommandPath(gate="off", timestep_s=0.005, joint_latency_s=(0.02, 0.02), object_latency_s=(0.08, 0.08),
                       object_drop_prob=0.0)
    batch = MujocoBatch(1, 0.05, path)
    q0 = REFS[0].q_at(3.0)
    batch.reset(np.array([0]), q0[None], REFS[0].object_pose_at(0.0)[None], np.ones(1), np.ones(1))
    target = (q0 + 0.2)[None]
    out = batch.step(target)
    assert not np.allclose(out["q_obs"], out["q"])  # 20 ms old
    np.testing.assert_allclose(out["object_pose_obs"], out["object_pose"], atol=1e-3)  # cube at rest anyway


@pytest.mark.parametrize("n_groups", [1, 2])
def test_worker_pool_matches_the_in_process_batch(n_groups):
    """Also with env groups stepped in turn (both in flight at once) and a reset handed over with the next step."""
    path = CommandPath.ideal("limits", 0.005)
    n = 4
    pool = WorkerPool(n, 0.05, n_workers=2, path=path, n_groups=n_groups)
    try:
        batch = MujocoBatch(n, 0.05, path)
        refs = [REFS[i % len(REFS)] for i in range(n)]
        q0 = np.stack([r.q_at(3.0) for r in refs])
        obj0 = np.stack([r.object_pose_at(0.0) for r in refs])
        for backend in (pool, batch):
            backend.reset(np.arange(n), q0, obj0, np.array([1.0, 0.8, 1.2, 0.9]), np.array([1.0, 1.4, 0.7, 1.1]))
        for k in range(4):
            if k == 2:  # env 1 (group 0) and env 3 start again; the pool reports the reset state at once
                for backend in (pool, batch):
                    backend.reset(np.array([1, 3]), q0[[1, 3]], obj0[[1, 3]], np.ones(2), np.ones(2))
                for key in OUTPUTS:
                    np.testing.assert_array_equal(pool.out[key], batch.out[key])
            target = np.stack([r.q_at(3.0 + 0.05 * (k + 1)) for r in refs])
            if n_groups == 1:
                a = pool.step(target)
            else:
                for group in pool.groups:
                    group.step_async(target[group.lo:group.hi])
                for group in pool.groups:
                    group.step_wait()
                a = pool.out
            b = batch.step(target)
            for key in ("q", "dq", "object_pose"):
                np.testing.assert_allclose(a[key], b[key], atol=1e-9)
    finally:
        pool.close()


def test_validation_references_are_neither_training_nor_held_out():
    val = validation_specs(6)
    assert len(val) == 6
    key = lambda s: (s.kind, s.object_xy_m, s.lift_m, s.push_m, s.rotate_rad)  # noqa: E731
    train = {key(s) for seed in range(10) for s in training_specs(24, seed=seed)}
    assert not {key(s) for s in val} & train
    assert not {key(s) for s in val} & {key(s) for s in HELD_OUT}


def test_tiny_training_run_writes_a_bundle_the_runtime_loads(tmp_path):
    from dexstack.policies.tracking import trainer

    cfg = trainer.TrainConfig(iterations=2, envs=2, workers=1, steps=4, train_references=1, validation_references=1,
                              validate_every_s=0.0)
    summary = trainer.train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    assert summary["samples"] == 16
    rows = (tmp_path / "run" / "curves.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("iteration,")
    assert summary["best"]["iteration"] >= 1
    assert summary["diverged_episodes"] == 0  # gate-on 5 ms physics from the references' states
    policy = load_policy(str(tmp_path / "run"), D)
    assert policy.manifest.observation_size == 166


def test_training_with_env_groups_on_worker_processes(tmp_path):
    from dexstack.policies.tracking import trainer

    cfg = trainer.TrainConfig(iterations=1, envs=4, workers=2, groups=2, steps=3, train_references=1,
                              validation_references=1, validate_every_s=1e9)
    summary = trainer.train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    assert summary["samples"] == 12
    row = (tmp_path / "run" / "curves.csv").read_text().strip().splitlines()[-1].split(",")
    assert np.isfinite(float(row[4]))  # mean reward over both groups' transitions
    with pytest.raises(ValueError, match="groups"):
        trainer.TrainConfig(groups=0)


def test_train_cli_runs_several_seeds_and_keeps_the_best_on_validation(tmp_path, capsys):
    import json

    from dexstack.cli.train import main

    out = tmp_path / "bundle"
    assert main(["tracking", "--iterations", "1", "--envs", "2", "--workers", "1", "--steps", "2", "--seed", "0",
                 "--seed", "1", "--train-references", "1", "--validation-references", "1", "--no-progress",
                 "--no-heldout", "--out", str(out)]) == 0
    info = json.loads((out / "train.json").read_text())
    assert [s["seed"] for s in info["seeds"]] == [0, 1] and info["selected_seed"] in (0, 1)
    assert (out / "model.pt").read_bytes() == (out / f"seed_{info['selected_seed']}" / "model.pt").read_bytes()
    assert main(["grasp", "--out", str(tmp_path / "g")]) == 2
    assert main(["tracking", "--backend", "isaacgym", "--iterations", "1", "--train-references", "1",
                 "--validation-references", "1", "--no-progress", "--out", str(tmp_path / "i")]) == 2
    assert "Isaac Gym" in capsys.readouterr().err


@pytest.mark.skipif(os.environ.get("DEXSTACK_TEST_MJWARP") != "1",
                    reason="MuJoCo Warp on Warp's CPU device compiles its kernels for ~3 min cold on 2 cores: "
                           "set DEXSTACK_TEST_MJWARP=1 (bench/train_throughput.py reports mjwarp_cpu_state_err)")
def test_mjwarp_matches_the_c_backend_on_cpu():
    pytest.importorskip("mujoco_warp")
    from dexstack.policies.tracking.mjwarp_backend import state_error_vs_c

    assert state_error_vs_c(20) < 1e-3


def test_object_pose_drops_come_in_bursts_of_the_configured_length():
    """Perception loses the cube for a while when the hand covers it: with bursts, the same fraction of periods is
    dropped, in runs of the configured mean length (independent drops: runs of 1 / (1 - p))."""
    from dexstack.policies.tracking.cpu_backend import next_drops

    def runs(path):
        rng = np.random.default_rng(0)
        dropping = np.zeros(200, dtype=bool)
        history = []
        for _ in range(400):
            dropping = next_drops(path, dropping, rng)
            history.append(dropping)
        h = np.array(history).T
        starts = (h[:, 1:] & ~h[:, :-1]).sum()
        return h.mean(), h.sum() / max(starts, 1)

    fraction, mean_run = runs(CommandPath(object_drop_prob=0.35, object_drop_burst_periods=6.0))
    assert fraction == pytest.approx(0.35, abs=0.03)
    assert mean_run == pytest.approx(6.0, rel=0.1)
    fraction, mean_run = runs(CommandPath(object_drop_prob=0.35))
    assert fraction == pytest.approx(0.35, abs=0.03)
    assert mean_run == pytest.approx(1 / 0.65, rel=0.1)
    with pytest.raises(ValueError, match="burst"):
        CommandPath(object_drop_burst_periods=0.5)
