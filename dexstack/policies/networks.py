"""Small torch building blocks of network policies: MLPs, the rl_games actor, observation normalisation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dexstack.policies.action import clip_raw_action

OBS_NORM_EPS, OBS_NORM_CLIP = 1e-5, 5.0

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU,
               "identity": nn.Identity}


def build_mlp(sizes: list[int] | tuple[int, ...], activation: str = "elu",
              last_activation: bool = False) -> nn.Sequential:
    """``Linear, act, Linear, act, ..., Linear``: layer ``i`` of ``sizes`` feeds layer ``i + 1``.

    Its ``state_dict`` (keys ``0.weight``, ``0.bias``, ``2.weight``, ...) is the ``state_dict`` checkpoint format.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class RlGamesActor(nn.Module):
    """The deterministic actor of an rl_games ``actor_critic`` network (continuous actions, MLP, no RNN/CNN).

    Module names follow rl_games' ``A2CBuilder.Network`` so its state_dict loads as is: ``actor_mlp`` is a
    sequence of ``Linear, activation`` pairs and ``mu`` the mean head (``mu_activation: None``).
    """

    def __init__(self, obs_size: int, hidden: tuple[int, ...], action_size: int, activation: str = "elu"):
        super().__init__()
        self.actor_mlp = build_mlp([obs_size, *hidden], activation, last_activation=True) if hidden else nn.Sequential()
        self.mu = nn.Linear(hidden[-1] if hidden else obs_size, action_size)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mu(self.actor_mlp(obs))


def normalize_observation(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float = OBS_NORM_EPS,
                          clip: float = OBS_NORM_CLIP) -> torch.Tensor:
    """``clamp((x - mean) / sqrt(var + eps), -clip, clip)``: the one observation normaliser of training (running
    statistics, :class:`dexstack.policies.tracking.ppo.RunningMeanStd`) and deployment (:class:`ObsNormalizer`)."""
    return torch.clamp((x - mean) / torch.sqrt(var + eps), -clip, clip)


class ObsNormalizer(nn.Module):
    """``clamp((x - mean) / sqrt(var + eps), -clip, clip)``, as rl_games' RunningMeanStd does at inference."""

    def __init__(self, mean: torch.Tensor, var: torch.Tensor, eps: float = OBS_NORM_EPS, clip: float = OBS_NORM_CLIP):
        super().__init__()
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("var", var.detach().float().clone())
        self.eps, self.clip = eps, clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_observation(x, self.mean, self.var, self.eps, self.clip)


class NetworkRunner:
    """A loaded network as a numpy function ``obs (obs_size,) -> raw action (action_size,)``.

    Applies the checkpoint's observation normaliser (if any), the network, then clips the raw action to
    ``[-clip, clip]`` (rl_games players clip to [-1, 1] before rescaling).
    """

    def __init__(self, module: nn.Module, obs_size: int, normalizer: nn.Module | None = None,
                 clip: float | None = None, device: str = "cpu"):
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.normalizer = None if normalizer is None else normalizer.to(self.device).eval()
        self.obs_size = obs_size
        self.clip = clip

    @torch.inference_mode()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1), device=self.device)
        if self.normalizer is not None:
            x = self.normalizer(x)
        y = self.module(x)
        if isinstance(y, (tuple, list)):  # some exported actors return (mu, sigma, ...): the mean comes first
            y = y[0]
        y = clip_raw_action(y, self.clip)
        return y.reshape(-1).to("cpu", torch.float64).numpy()
