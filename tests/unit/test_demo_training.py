"""Training from demos: the object's start is randomised around the reference's (within the bounds, both ways),
reference files are checked, and --init copies a bundle's actor exactly (the fine-tuned policy starts as it)."""

import numpy as np
import pytest
import torch

from dexstack.policies import load_reference, reference_path
from dexstack.policies.manifest import parse_manifest
from dexstack.policies.tracking.ppo import ActorCritic, PPOConfig
from dexstack.policies.tracking.task import Randomization, TrackingTask, quat_angle
from dexstack.policies.tracking.trainer import init_from_bundle, load_reference_files, tracking_manifest
from dexstack.robot import load_description

D = load_description("panda_allegro")


def test_object_start_is_randomised_around_the_reference():
    ref = load_reference(reference_path("lift"), D)
    m = parse_manifest(tracking_manifest(len(D.arm_joints), len(D.hand_joints)))
    task = TrackingTask(m, D, [ref], randomization=Randomization(object_start_xy_m=0.015, object_start_yaw_rad=0.15),
                        dtype=torch.float64)
    state = task.new_state(256)
    out = task.reset(state, torch.arange(256), torch.Generator().manual_seed(0))
    start = torch.as_tensor(ref.object_pose_at(0.0))
    d_xy = out["object_pose"][:, :2] - start[:2]
    assert d_xy.abs().max() <= 0.015 + 1e-9 and d_xy.abs().max() > 0.012  # bounded, and used
    assert (d_xy[:, 0] > 0).any() and (d_xy[:, 0] < 0).any()
    assert torch.allclose(out["object_pose"][:, 2], start[2].expand(256))  # stays on the table
    yaw = quat_angle(out["object_pose"][:, 3:], start[3:].expand(256, 4))
    assert yaw.max() <= 0.15 + 1e-6 and yaw.max() > 0.12
    plain = TrackingTask(m, D, [ref], dtype=torch.float64)  # default: no start randomisation (designed references)
    out = plain.reset(plain.new_state(4), torch.arange(4), torch.Generator().manual_seed(0))
    assert torch.allclose(out["object_pose"], start.expand(4, 7))


def test_reference_files_are_checked(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_reference_files([str(tmp_path / "missing.npz")], D)
    assert len(load_reference_files([str(reference_path("push"))], D)) == 1


def test_init_copies_the_bundles_actor():
    m = parse_manifest(tracking_manifest(len(D.arm_joints), len(D.hand_joints)))
    task = TrackingTask(m, D, [load_reference(reference_path("lift"), D)])
    obs_size = task.obs_size
    model = ActorCritic(obs_size, task.action_size, PPOConfig())
    init_from_bundle(model, "track_cube", D)
    from dexstack.policies import load_policy

    policy = load_policy("track_cube", D)
    x = torch.randn(3, obs_size)
    with torch.no_grad():
        ours = torch.clamp(model.actor(model.normalizer(x)), -1, 1)
    theirs = np.stack([np.asarray(policy.network(row.numpy())) for row in x])
    assert np.allclose(ours.numpy(), theirs, atol=1e-4)
    assert float(model.normalizer.count) == pytest.approx(1e5)
    assert not torch.allclose(model.log_std, torch.full_like(model.log_std, PPOConfig().init_log_std))


def _rollout(obs_size: int, action_size: int, T: int = 8, E: int = 4):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(T, E, obs_size, generator=g), torch.randn(T, E, action_size, generator=g),
            torch.zeros(T, E), torch.zeros(T, E), torch.rand(T, E, generator=g), torch.zeros(T, E), torch.zeros(E))


def test_critic_warmup_leaves_the_fine_tuned_actor_as_loaded():
    """Fine-tuning starts with a fresh critic: during the warm-up updates only the critic learns (the actor, its std
    and the learning rate stay), then the actor moves."""
    from dexstack.policies.tracking.ppo import PPO

    model = ActorCritic(10, 3, PPOConfig())
    ppo = PPO(model, PPOConfig(critic_warmup_updates=2, epochs=2, minibatches=2))
    actor0 = [p.detach().clone() for p in model.actor.parameters()] + [model.log_std.detach().clone()]
    critic0 = [p.detach().clone() for p in model.critic.parameters()]
    batch = _rollout(10, 3)
    for _ in range(2):
        stats = ppo.update(*batch)
        assert all(torch.equal(a, b) for a, b in zip(actor0, [*model.actor.parameters(), model.log_std]))
        assert stats["lr"] == PPOConfig().learning_rate
    assert not all(torch.equal(a, b) for a, b in zip(critic0, model.critic.parameters()))
    batch = (batch[0], batch[1], batch[2] - 1.0, *batch[3:])  # the actor's own log-probs differ: a real update
    ppo.update(*batch)
    assert not all(torch.equal(a, b) for a, b in zip(actor0, [*model.actor.parameters(), model.log_std]))


def test_fine_tuning_options_are_checked():
    from dexstack.policies.tracking.trainer import TrainConfig

    with pytest.raises(ValueError, match="init_bundle"):
        TrainConfig(critic_warmup=5)
    with pytest.raises(ValueError, match="init_std"):
        TrainConfig(init_bundle="track_cube", init_std=-0.1)
    with pytest.raises(ValueError, match="object_drop_prob"):
        TrainConfig(object_drop_prob=1.0)
    with pytest.raises(ValueError, match="freeze_normalizer"):
        TrainConfig(freeze_normalizer=True)
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0.5)
    with pytest.raises(ValueError, match="desired_kl"):
        TrainConfig(desired_kl=-0.01)
    TrainConfig(init_bundle="track_cube", init_std=0.2, critic_warmup=10, object_drop_prob=0.35, learning_rate=1e-5,
                desired_kl=0.003, freeze_normalizer=True)


def test_selection_can_keep_the_init_actor_when_fine_tuning_makes_validation_worse(tmp_path, monkeypatch):
    """--init: the starting actor is validated as iteration 0; an update that wrecks the actor is not selected."""
    from dexstack.policies import load_policy
    from dexstack.policies.tracking import trainer
    from dexstack.policies.tracking.ppo import PPO

    def wreck(self, *args, **kwargs):
        with torch.no_grad():
            for p in self.model.actor.parameters():
                p.add_(torch.randn_like(p))
        return {"value_loss": 0.0, "kl": 0.0, "lr": 0.0, "std": 0.0}

    monkeypatch.setattr(PPO, "update", wreck)
    lift = str(reference_path("lift"))
    config = trainer.TrainConfig(iterations=1, envs=2, workers=1, steps=2, reference_files=(lift,),
                                 validation_files=(lift,), init_bundle="track_cube")
    summary = trainer.train(config, tmp_path, progress=False, log=lambda *_: None)
    assert summary["best"]["iteration"] == 0 and summary["best"]["val_success"] == 1.0
    ours, theirs = load_policy(str(tmp_path), D), load_policy("track_cube", D)  # the exported bundle is the init
    x = np.random.default_rng(0).normal(size=(3, ours.observation.size))
    assert np.allclose([ours.network(r) for r in x], [theirs.network(r) for r in x], atol=1e-5)
    wrecked = load_policy(str(tmp_path / "last"), D, reference=lift)  # (last/ does not carry the references)
    assert not np.allclose([wrecked.network(r) for r in x], [theirs.network(r) for r in x], atol=1e-3)


def test_frozen_normalizer_and_ppo_overrides_reach_the_fine_tuned_bundle(tmp_path, monkeypatch):
    """--freeze-normalizer: the actor's inputs keep the bundle's statistics (with no actor update the exported actor
    is the bundle's); without it they drift towards the new references'; --learning-rate/--desired-kl reach PPO."""
    from dexstack.policies import load_policy
    from dexstack.policies.tracking import trainer
    from dexstack.policies.tracking.ppo import PPO

    monkeypatch.setattr(PPO, "update", lambda self, *a, **k: {"value_loss": 0.0, "kl": 0.0, "lr": self.lr,
                                                               "std": 0.0})
    lift = str(reference_path("lift"))
    theirs = load_policy("track_cube", D)
    x = np.random.default_rng(0).normal(size=(3, theirs.observation.size))
    outputs = {}
    for frozen in (True, False):
        out = tmp_path / str(frozen)
        config = trainer.TrainConfig(iterations=2, envs=2, workers=1, steps=4, reference_files=(lift,),
                                     validation_files=(lift,), init_bundle="track_cube", freeze_normalizer=frozen,
                                     learning_rate=1e-5, desired_kl=0.004)
        summary = trainer.train(config, out, progress=False, log=lambda *_: None)
        assert summary["ppo"]["learning_rate"] == 1e-5 and summary["ppo"]["desired_kl"] == 0.004
        ours = load_policy(str(out / "last"), D, reference=lift)
        outputs[frozen] = np.array([ours.network(r) for r in x])
    expected = np.array([theirs.network(r) for r in x])
    assert np.allclose(outputs[True], expected, atol=1e-5)
    assert not np.allclose(outputs[False], expected, atol=1e-5)
