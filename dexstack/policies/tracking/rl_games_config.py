"""The rl_games training config of the Isaac Gym tracking task (importable without Isaac Gym)."""

from __future__ import annotations

from typing import Any


def rl_games_config(task_name: str = "DexstackTracking", hidden: tuple[int, ...] = (256, 128),
                    num_actors: int = 4096, max_epochs: int = 5000) -> dict[str, Any]:
    """The rl_games ``train`` config (IsaacGymEnvs' ``cfg/train/<Task>PPO.yaml``) matching our actor: MLP with ELU,
    continuous actions with a fixed (learned) sigma, input normalisation (running mean/std, saved in the
    checkpoint), no value normalisation requirement on the deployment side."""
    return {"params": {
        "seed": 0,
        "algo": {"name": "a2c_continuous"},
        "model": {"name": "continuous_a2c_logstd"},
        "network": {"name": "actor_critic", "separate": False,
                    "space": {"continuous": {"mu_activation": "None", "sigma_activation": "None",
                                             "mu_init": {"name": "default"},
                                             "sigma_init": {"name": "const_initializer", "val": -1.0},
                                             "fixed_sigma": True}},
                    "mlp": {"units": list(hidden), "activation": "elu", "d2rl": False,
                            "initializer": {"name": "default"}, "regularizer": {"name": "None"}}},
        "load_checkpoint": False,
        "config": {"name": task_name, "full_experiment_name": task_name, "env_name": "rlgpu", "multi_gpu": False,
                   "ppo": True, "mixed_precision": False, "normalize_input": True, "normalize_value": True,
                   "value_bootstrap": True, "num_actors": num_actors, "reward_shaper": {"scale_value": 0.1},
                   "normalize_advantage": True, "gamma": 0.98, "tau": 0.95, "learning_rate": 3e-4,
                   "lr_schedule": "adaptive", "kl_threshold": 0.01, "score_to_win": 100000,
                   "max_epochs": max_epochs, "save_best_after": 100, "save_frequency": 200, "grad_norm": 1.0,
                   "entropy_coef": 0.0, "truncate_grads": True, "e_clip": 0.2, "horizon_length": 32,
                   "minibatch_size": num_actors * 8, "mini_epochs": 5, "critic_coef": 2.0, "clip_value": True,
                   "bounds_loss_coef": 0.0001, "clip_actions": True},
    }}
