"""V-GPS: sparse rewards and Monte-Carlo returns, the Cal-QL lower bound, the K-sample choice (argmax over the
ensemble's minimum, softmax, random), refusals (deterministic base, bad critics, bad K/temperature), and an episode
recorded through the recorder's session read back into exactly the observations and actions the policy used."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dexstack.policies import PolicyError, build_policy, load_policy, parse_manifest
from dexstack.policies.checkpoints import save_rl_games_checkpoint
from dexstack.policies.manifest import write_manifest
from dexstack.policies.networks import RlGamesActor, build_mlp
from dexstack.policies.registry import synthetic_context
from dexstack.policies.vgps import VgpsConfig
from dexstack.robot import load_description
from dexstack.vgps.calql import CriticTrainer, GaussianPolicy, TrainConfig
from dexstack.vgps.critic import QEnsemble, load_critic, save_critic, spec_for
from dexstack.vgps.dataset import Episode, mc_returns, sparse_rewards, to_transitions

D = load_description("panda_allegro")
N = len(D.joints)
OBS = 2 * N


def base_manifest(**extra) -> dict:
    return {"name": "tiny", "type": "tracking", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
            "reference": "lift", "checkpoint": {"file": "model.pt", "format": "rl_games", "hidden": [16]},
            "observation": [{"name": "joint_pos", "size": N}, {"name": "joint_vel", "size": N}],
            "action": {"mode": "residual", "joints": "all", "scale": 0.05, "clip": 1.0}, **extra}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vgps")
    torch.manual_seed(0)
    actor = RlGamesActor(OBS, (16,), N)
    save_rl_games_checkpoint(root / "tiny" / "model.pt", actor, torch.zeros(OBS), torch.ones(OBS),
                             torch.full((N,), -1.0))
    write_manifest(base_manifest(), root / "tiny")
    # a deterministic bundle: a state_dict MLP with no log-std
    (root / "det").mkdir()
    torch.save(build_mlp([OBS, 16, N]).state_dict(), root / "det" / "model.pt")
    m = base_manifest(name="det")
    m["checkpoint"]["format"] = "state_dict"
    write_manifest(m, root / "det")
    base = parse_manifest(base_manifest(), root / "tiny")
    save_critic(QEnsemble(spec_for(base, N, ("lift", "push"), "tiny_q", hidden=(8,), activation="identity")),
                root / "tiny_q")
    return root


def vgps_manifest(root: Path, **params) -> dict:
    return {"name": "v", "type": "vgps", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
            "params": {"base_policy": str(root / "tiny"), "critic": str(root / "tiny_q"), "num_samples": 8,
                       **params}}


def build(root: Path, **params):
    return build_policy(parse_manifest(vgps_manifest(root, **params)), D)


# ------------------------------------------------------------------------------------------------ numbers
def test_sparse_rewards_and_monte_carlo_returns():
    r = sparse_rewards(5, True)
    assert r.tolist() == [0, 0, 1, 1, 1]
    g = mc_returns(r, 0.98)
    g2 = 1 + 0.98 + 0.98 ** 2
    assert g == pytest.approx([0.98 ** 2 * g2, 0.98 * g2, g2, 1 + 0.98, 1.0], rel=1e-6)
    assert sparse_rewards(4, False).sum() == 0 and mc_returns(sparse_rewards(4, False)).sum() == 0
    assert sparse_rewards(2, True).tolist() == [1, 1]  # shorter than 3 steps: all positive

    ep = [Episode(np.arange(8, dtype=np.float32).reshape(4, 2), np.zeros((4, 1), np.float32), True, "lift"),
          Episode(np.ones((3, 2), np.float32), np.zeros((3, 1), np.float32), False, "push")]
    t = to_transitions(ep, ("lift", "push"))
    assert t.dones.tolist() == [0, 0, 0, 1, 0, 0, 1]  # each episode ends on its last step
    assert t.rewards.tolist() == [0, 1, 1, 1, 0, 0, 0]
    assert t.next_obs[0].tolist() == [2, 3] and t.next_obs[3].tolist() == [6, 7]
    assert t.task_codes.tolist() == [[1, 0]] * 4 + [[0, 1]] * 3
    assert t.episodes == 2 and t.successes == 1


def _constant_critic(spec) -> QEnsemble:
    net = QEnsemble(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()  # Q = 0 for every input
    return net


def test_calql_bounds_the_policy_values_below_by_the_monte_carlo_return():
    """With Q = 0 everywhere and MC returns of 100, Cal-QL's conservative term sees the policy's values as 100
    (the bound), plain CQL sees 0: logsumexp over {Q - log density} is then >= 100 and < 100 respectively."""
    base = parse_manifest(base_manifest())
    spec = spec_for(base, N, ("lift",), "q", hidden=(8,))
    n = 64
    data = to_transitions([Episode(np.random.default_rng(0).normal(size=(n, OBS)).astype(np.float32),
                                   np.zeros((n, N), np.float32), False, "lift")], ("lift",))
    data.mc_returns[:] = 100.0
    mu = torch.nn.Linear(OBS, N)
    torch.nn.init.zeros_(mu.weight)
    torch.nn.init.zeros_(mu.bias)
    policy = GaussianPolicy(mu, None, torch.zeros(N))  # N(0, 1): -log density ~ 1.42 per dimension
    gaps = {}
    for calibrated in (True, False):
        trainer = CriticTrainer(spec, data, policy, TrainConfig(calibrated=calibrated, batch_size=n, cql_actions=4))
        trainer.net = _constant_critic(spec)
        trainer.target = _constant_critic(spec)
        _, stats = trainer.losses(trainer.batch())
        gaps[calibrated] = stats["cql_gap"]
        if calibrated:
            assert stats["mc_bound_active"] == 1.0 and stats["q_pi"] == pytest.approx(100.0)
        assert stats["q_data"] == 0.0 and stats["target"] == 0.0  # r = 0 (failed episode), Q(s', a') = 0
    assert gaps[True] >= 100.0
    assert gaps[False] < 100.0
    # with the bound, the policy terms dominate: 100 + logsumexp(-log p) > 100 + N * 0.5 * log(2 pi)
    assert gaps[True] > 100.0 + N * 0.5 * np.log(2 * np.pi)


@pytest.mark.parametrize("algorithm", ["calql", "iql"])
def test_training_on_a_tiny_dataset_orders_success_above_failure(algorithm):
    """Two tasks' worth of states: in one region every episode succeeds, in the other every one fails; after a few
    hundred Cal-QL steps the critic values the successful states' data above the failed ones."""
    base = parse_manifest(base_manifest())
    spec = spec_for(base, N, ("lift",), "q", hidden=(32, 32))
    rng = np.random.default_rng(1)
    eps = []
    for i in range(12):
        good = i % 2 == 0
        obs = rng.normal(2.0 if good else -2.0, 0.3, size=(6, OBS)).astype(np.float32)
        eps.append(Episode(obs, rng.uniform(-1, 1, (6, N)).astype(np.float32), good, "lift"))
    data = to_transitions(eps, ("lift",))
    torch.manual_seed(0)
    mu = torch.nn.Linear(OBS, N)
    policy = GaussianPolicy(mu, None, torch.full((N,), -1.0))
    torch.set_num_threads(1)
    trainer = CriticTrainer(spec, data, policy, TrainConfig(algorithm=algorithm, steps=300, batch_size=64,
                                                            cql_actions=2, cql_alpha=0.1, log_every=100,
                                                            learning_rate=1e-3))
    rows = trainer.train(data)
    assert rows[-1]["val_q_mc_corr"] > 0.3, rows[-1]  # 0.49-0.78 over seeds 0-4
    q = trainer.net(torch.as_tensor(data.obs), torch.as_tensor(data.task_codes),
                    torch.as_tensor(data.actions)).min(0).values.detach().numpy()
    good = data.mc_returns > 0
    assert q[good].mean() > q[~good].mean() + 0.4  # 0.69-1.25 over seeds 0-4


def _set_linear_critic(policy, coef0: float, coef1: float) -> None:
    """Member 0: Q = coef0 * a_0, member 1: Q = coef1 * a_0 (identity activation, one hidden unit)."""
    spec = policy.critic.spec
    net = QEnsemble(spec)
    col = spec.obs_size + len(spec.tasks)  # first action input
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for member, coef in zip(net.members, (coef0, coef1)):
            member[0].weight[0, col] = coef
            member[-1].weight[0, 0] = 1.0
    net.obs_std.fill_(1.0)
    policy.critic.net = net.eval()


def test_k_samples_argmax_of_the_ensemble_minimum(root):
    policy = build(root, temperature=0.0, include_mean=False)
    assert policy.config.num_samples == 8
    obs = np.random.default_rng(0).normal(size=OBS)
    _set_linear_critic(policy, 1.0, 1.0)  # Q = a_0: the candidate with the largest a_0
    policy.reseed(3)
    cands = policy.head.candidates(obs, 8, policy.generator, False).numpy()
    policy.reseed(3)
    raw, info = policy.select(obs)
    assert info["index"] == int(np.argmax(cands[:, 0]))
    assert raw == pytest.approx(cands[info["index"]])
    assert info["q_spread"] == pytest.approx(cands[:, 0].max() - cands[:, 0].min(), abs=1e-5)
    _set_linear_critic(policy, 1.0, -1.0)  # min(a_0, -a_0) = -|a_0|: the candidate nearest a_0 = 0
    policy.reseed(3)
    _, info = policy.select(obs)
    assert info["index"] == int(np.argmin(np.abs(cands[:, 0])))


def test_temperature_and_random_selection_spread_the_choice(root):
    obs = np.zeros(OBS)
    counts = {}
    for key, params in (("cold", {"temperature": 1e-6}), ("hot", {"temperature": 1e4}),
                        ("random", {"selection": "random"})):
        policy = build(root, include_mean=True, **params)
        _set_linear_critic(policy, 1.0, 1.0)
        picks, best = [], []
        for s in range(200):
            policy.reseed(s)
            cands = policy.head.candidates(obs, 8, policy.generator, True).numpy()
            policy.reseed(s)
            _, info = policy.select(obs)
            picks.append(info["index"])
            best.append(int(np.argmax(cands[:, 0])))
        counts[key] = np.mean(np.array(picks) == np.array(best))
    assert counts["cold"] >= 0.99  # T -> 0 is the argmax (but for near-ties)
    assert counts["hot"] < 0.3 and counts["random"] < 0.3  # ~1/8 each


def test_vgps_steps_through_the_action_layout_and_reports_diagnostics(root):
    policy = build(root)
    ctx = synthetic_context(policy)
    policy.reset(ctx)
    for _ in range(5):
        out = policy.act(ctx)
        assert out.arm.shape == (7,) and np.all(np.isfinite(out.hand))
        assert np.all(out.arm >= policy.action.lower[:7]) and np.all(out.arm <= policy.action.upper[:7])
    diag = policy.diagnostics()
    assert diag["vgps_k"] == "8" and diag["vgps_critic"] == "tiny_q" and diag["vgps_base_policy"] == "tiny"
    assert float(diag["vgps_q_spread_mean"]) >= 0.0 and diag["vgps_choice_differs_from_mean"] != "n/a"


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("params, message", [
    ({"num_samples": 0}, "num_samples"), ({"num_samples": -3}, "num_samples"), ({"num_samples": 100000}, "num_samples"),
    ({"num_samples": 2.5}, "num_samples"), ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"selection": "best"}, "selection"),
    ({"std_scale": 0.0}, "std_scale"), ({"std_scale": -1.0}, "std_scale"), ({"std_scale": 100.0}, "std_scale"),
    ({"margin": -0.1}, "margin must be"), ({"margin": float("nan")}, "margin must be"),
    ({"margin": float("inf")}, "margin must be"), ({"margin": "0.2"}, "margin must be"),
    ({"margin": True}, "margin must be"), ({"margin": 0.2, "include_mean": False}, "needs include_mean"),
    ({"margin": 0.2, "temperature": 0.5}, "temperature 0"),
    ({"surprise": 1}, "unknown keys")])
def test_bad_parameters_are_refused(root, params, message):
    with pytest.raises(PolicyError, match=message):
        build(root, **params)
    with pytest.raises(PolicyError):
        VgpsConfig(base_policy="x", critic="y", **{k: v for k, v in params.items() if k != "surprise"}) \
            if "surprise" not in params else VgpsConfig.from_params({"base_policy": "x", **params})


def test_a_deterministic_base_is_refused_with_the_reason(root):
    with pytest.raises(PolicyError, match="deterministic"):
        build(root, base_policy=str(root / "det"))
    with pytest.raises(PolicyError, match="not a network policy|no checkpoint"):
        build(root, base_policy="replay", critic="", selection="random")


def _critic_copy(root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "q"
    shutil.copytree(root / "tiny_q", out)
    return out


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_critic_files_are_refused(root, tmp_path):
    with pytest.raises(PolicyError, match="not found"):
        build(root, critic=str(tmp_path / "nowhere"))
    corrupt = _critic_copy(root, tmp_path / "c")
    (corrupt / "critic.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(PolicyError, match="not a readable torch file"):
        load_critic(str(corrupt))
    evil = _critic_copy(root, tmp_path / "e")
    marker = tmp_path / "pwned"
    torch.save({"q0.0.weight": _Payload(marker)}, evil / "critic.pt")
    with pytest.raises(PolicyError, match="refused"):
        build(root, critic=str(evil))
    assert not marker.exists()
    bad_yaml = _critic_copy(root, tmp_path / "y")
    (bad_yaml / "critic.yaml").write_text("type: something_else\n")
    with pytest.raises(PolicyError, match="not a V-GPS critic"):
        load_critic(str(bad_yaml))


@pytest.mark.parametrize("change, message", [
    (lambda y: y["observation"][1].update(scale=[0.5]), "another observation layout"),
    (lambda y: y.update(robot_profile="ur5_leap"), "robot profile"),
    (lambda y: y["action"].update(mode="delta"), "'delta' actions"),
    (lambda y: y.update(control_rate_hz=50.0), "50 Hz"),
])
def test_a_critic_for_another_layout_is_refused(root, tmp_path, change, message):
    other = _critic_copy(root, tmp_path)
    raw = yaml.safe_load((other / "critic.yaml").read_text())
    change(raw)
    (other / "critic.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match=message):
        build(root, critic=str(other))


def test_a_critic_with_another_action_size_is_refused(root, tmp_path):
    base = parse_manifest(base_manifest(), root / "tiny")
    save_critic(QEnsemble(spec_for(base, N - 1, ("lift",), "short", hidden=(8,))), tmp_path / "short")
    with pytest.raises(PolicyError, match=f"scores {N - 1} actions"):
        build(root, critic=str(tmp_path / "short"))


def test_a_reference_task_the_critic_never_saw_is_refused(root):
    with pytest.raises(PolicyError, match="task 'rotate'"):
        load_policy(str(_bundle(root)), D, reference="rotate")
    assert load_policy(str(_bundle(root)), D, reference="push").critic.name == "tiny_q"


def _bundle(root: Path) -> Path:
    write_manifest(vgps_manifest(root), root / "v")
    return root / "v"


# ------------------------------------------------------------------------------------------------ recorded data
def test_a_recorded_episode_reads_back_as_the_policys_observations_and_actions(root, tmp_path):
    """Through the recorder's session (MCAP on disk) and back: the observations the policy built and the actions it
    took (as they act, after the joint-limit clip) are recovered exactly; the success label comes from set_success."""
    from dexstack.policies import save_reference
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.policies.tracking.references import TaskSpec, make_reference
    from dexstack.record.msgdefs import TypeRegistry
    from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec
    from dexstack.vgps.collect import TOPICS, MessageFactory, record_episode
    from dexstack.vgps.dataset import REFERENCES_SUBDIR, load_transitions

    ref = make_reference(TaskSpec("push", "t_push", push_m=(0.0, 0.03), speed=2.0), D)
    (tmp_path / REFERENCES_SUBDIR).mkdir()
    save_reference(ref, D.joints, tmp_path / REFERENCES_SUBDIR / "t_push.npz")
    policy = build(root, critic="", selection="random", num_samples=1, include_mean=False)
    seen = []
    select = policy.select

    def spy(obs, base=None):
        o = obs.copy()
        o_la = policy._last_effective.copy()  # what the recording can show of the previous action
        raw, info = select(obs, base)
        seen.append((o, o_la, policy._last_effective.copy()))
        return raw, info

    policy.select = spy
    registry = TypeRegistry()
    session = RecordingSession(SessionConfig(output_dir=tmp_path), registry)
    for topic, type_name in TOPICS.items():
        session.set_topic(TopicSpec(topic, type_name))
    try:
        success, _, steps = record_episode(session, MessageFactory(registry, D), policy, ref, CellBackend(), D,
                                              stop_on_failure=False)
    finally:
        session.close()
    data = load_transitions(tmp_path, parse_manifest(base_manifest(), root / "tiny"), D)
    assert data.episodes == 1 and len(data) == steps == len(seen)
    assert data.successes == int(success)
    obs = np.array([o for o, _, _ in seen])
    assert np.abs(data.obs - obs).max() < 1e-5  # no last_action field in this layout: the observation as built
    acted = np.array([a for _, _, a in seen])
    assert np.abs(data.actions - acted).max() < 1e-4
    assert np.all(data.actions >= data.action_low - 1e-5) and np.all(data.actions <= data.action_high + 1e-5)


def test_std_scale_narrows_the_candidates_around_the_mean(root):
    """std_scale 0.25: the candidates' spread around the mean is a quarter of the policy's Gaussian (same draws)."""
    obs = np.zeros(OBS)
    spreads = {}
    for scale in (1.0, 0.25):
        policy = build(root, include_mean=True, std_scale=scale)
        policy.reseed(3)
        cands = policy.head.candidates(obs, 64, policy.generator, True, policy.config.std_scale).numpy()
        spreads[scale] = np.abs(cands[1:] - cands[0]).mean()
    assert spreads[0.25] == pytest.approx(0.25 * spreads[1.0], rel=0.05)


# ------------------------------------------------------------------------------------------------ margin
def _fixed_q(policy, q: list[float]) -> None:
    """The critic returns these Q values for the K candidates, whatever they are (candidate 0 = the mean action)."""
    policy.critic.score = lambda obs, code, actions: torch.tensor(q, dtype=torch.float32)


@pytest.mark.parametrize("margin, q, expected", [
    # Q(mean) = 1.0, best sample #3 at 1.4: gain 0.4
    (0.0, [1.0, 1.2, 0.3, 1.4, 0.9, 1.1, 0.2, 1.0], 3),  # margin 0: plain argmax
    (0.5, [1.0, 1.2, 0.3, 1.4, 0.9, 1.1, 0.2, 1.0], 0),  # 0.4 <= 0.5: the mean
    (0.25, [1.0, 1.2, 0.3, 1.4, 0.9, 1.1, 0.2, 1.0], 3),  # 0.4 > 0.25: the argmax
    (0.5, [1.0, 1.2, 0.3, 1.4, 0.9, 1.6, 0.2, 1.0], 5),  # 0.6 > 0.5: the argmax (#5)
    (0.5, [1.0, 1.2, 0.3, 1.5, 0.9, 1.1, 0.2, 1.0], 0),  # exactly the margin is not more than it: the mean
    (0.5, [2.0, 1.2, 0.3, 1.5, 0.9, 1.1, 0.2, 1.0], 0),  # the mean is the argmax
    (0.0, [1.0, 1.0, 0.3, 1.0, 0.9, 1.0, 0.2, 1.0], 0),  # margin 0 and a tie with the mean: the mean (first max)
])
def test_margin_keeps_the_mean_unless_the_argmax_beats_it_by_more(root, margin, q, expected):
    obs = np.random.default_rng(1).normal(size=OBS)
    policy = build(root, include_mean=True, margin=margin)
    assert policy.config.margin == margin
    _fixed_q(policy, q)
    policy.reseed(5)
    cands = policy.head.candidates(obs, 8, policy.generator, True).numpy()
    policy.reseed(5)
    raw, info = policy.select(obs)
    assert info["index"] == expected
    assert raw == pytest.approx(cands[expected], abs=1e-6)
    assert info["q_gain"] == pytest.approx(max(q) - q[0], abs=1e-6)
    assert info["q_spread"] == pytest.approx(max(q) - min(q), abs=1e-6)


def test_margin_zero_is_todays_argmax_and_the_diagnostics_report_the_gain(root):
    """Same draws, same critic: margin 0 picks exactly what a bundle without the key picks, step after step."""
    picks = {}
    for key, params in (("absent", {}), ("zero", {"margin": 0}), ("big", {"margin": 1e6})):
        policy = build(root, include_mean=True, **params)
        _set_linear_critic(policy, 1.0, 1.0)
        ctx = synthetic_context(policy)
        policy.reset(ctx)
        policy.reseed(7)
        picks[key] = [policy.act(ctx).arm.copy() for _ in range(10)]
        diag = policy.diagnostics()
        if key == "zero":
            assert isinstance(policy.config.margin, float)  # the YAML int 0 read as a float
            assert diag["vgps_margin"] == "0" and float(diag["vgps_q_gain_p90"]) >= float(diag["vgps_q_gain_p50"]) > 0
            assert float(diag["vgps_choice_differs_from_mean"]) > 0
        if key == "big":  # no sample can beat the mean by 1e6: always the mean
            assert diag["vgps_margin"] == "1e+06" and float(diag["vgps_choice_differs_from_mean"]) == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(picks["absent"], picks["zero"]))
    assert not all(np.array_equal(a, b) for a, b in zip(picks["zero"], picks["big"]))


def test_margin_is_refused_without_a_critic_choice(root):
    with pytest.raises(PolicyError, match="needs include_mean"):
        VgpsConfig.from_params({"base_policy": "x", "critic": "y", "margin": 1, "include_mean": False})
    with pytest.raises(PolicyError, match="selection 'critic'"):
        build(root, include_mean=True, margin=0.1, selection="random")
    assert VgpsConfig(base_policy="x", critic="y", include_mean=False, margin=0.0).margin == 0.0  # 0 is always fine
