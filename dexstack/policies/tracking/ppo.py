"""A small PPO (clipped surrogate, GAE, value clipping, adaptive learning rate on KL), rsl_rl-style and readable.

The actor is :class:`~dexstack.policies.networks.RlGamesActor` (so a trained policy exports as an rl_games
checkpoint, the format DexTrack's trainers save) with a state-independent log-std; observations are normalised by
running statistics as rl_games' ``RunningMeanStd`` does (clamped to +-5), and those statistics ship in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dexstack.policies.networks import OBS_NORM_EPS, RlGamesActor, build_mlp, normalize_observation


@dataclass(frozen=True)
class PPOConfig:
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "elu"
    init_log_std: float = -1.0
    learning_rate: float = 3e-4
    gamma: float = 0.98
    lam: float = 0.95
    clip: float = 0.2
    epochs: int = 5
    minibatches: int = 4
    value_coef: float = 1.0
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    desired_kl: float = 0.01
    imitation_coef: float = 0.0  # optional: pull the mean residual towards 0 (= the reference) early on
    reward_scale: float = 0.1  # keeps returns (and the critic's share of the clipped gradient) small
    # fine-tuning: the first updates train only the (fresh) critic, the actor and its std stay as loaded; without
    # this the untrained critic's advantages are noise and the first actor updates undo what the bundle knew
    critic_warmup_updates: int = 0


class RunningMeanStd(nn.Module):
    def __init__(self, size: int, eps: float = OBS_NORM_EPS):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.eps = eps

    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_observation(x, self.mean.float(), self.var.float(), self.eps)


class ActorCritic(nn.Module):
    def __init__(self, obs_size: int, action_size: int, config: PPOConfig):
        super().__init__()
        self.normalizer = RunningMeanStd(obs_size)
        self.actor = RlGamesActor(obs_size, config.hidden, action_size, config.activation)
        self.critic = build_mlp([obs_size, *config.hidden, 1], config.activation)
        self.log_std = nn.Parameter(torch.full((action_size,), config.init_log_std))
        with torch.no_grad():  # start as the reference (zero residual), exploring around it
            self.actor.mu.weight.mul_(0.01)
            self.actor.mu.bias.zero_()

    def distribution(self, obs_n: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(obs_n), self.log_std.exp().expand(obs_n.shape[0], -1))

    @torch.no_grad()
    def act(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample from *normalised* observations (store those: the update must see what the actor saw)."""
        dist = self.distribution(obs_n)
        action = dist.sample()
        return action, dist.log_prob(action).sum(-1), self.critic(obs_n).squeeze(-1)


class PPO:
    def __init__(self, model: ActorCritic, config: PPOConfig):
        self.model = model
        self.config = config
        self.lr = config.learning_rate
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        self.updates = 0  # calls of update()

    def update(self, obs_n, actions, log_probs, values, rewards, dones, last_values) -> dict[str, float]:
        """Tensors shaped (T, E, ...) from one rollout (observations normalised as when acting); ``dones`` ends an
        episode after that step."""
        c = self.config
        rewards = rewards * c.reward_scale
        T = rewards.shape[0]
        advantages = torch.zeros_like(rewards)
        gae = torch.zeros_like(last_values)
        for t in reversed(range(T)):
            next_values = last_values if t == T - 1 else values[t + 1]
            not_done = 1.0 - dones[t]
            delta = rewards[t] + c.gamma * next_values * not_done - values[t]
            gae = delta + c.gamma * c.lam * not_done * gae
            advantages[t] = gae
        returns = advantages + values
        flat = lambda x: x.reshape(T * x.shape[1], *x.shape[2:])  # noqa: E731
        obs_n, actions, log_probs, values, returns, advantages = map(flat, (obs_n, actions, log_probs, values,
                                                                            returns, advantages))
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        n = obs_n.shape[0]
        stats = {"value_loss": 0.0, "surrogate": 0.0, "kl": 0.0}
        updates = 0
        warmup = self.updates < c.critic_warmup_updates
        self.updates += 1
        for _ in range(c.epochs):
            for idx in torch.randperm(n).chunk(c.minibatches):
                dist = self.model.distribution(obs_n[idx])
                new_log_probs = dist.log_prob(actions[idx]).sum(-1)
                ratio = torch.exp(new_log_probs - log_probs[idx])
                surrogate = -torch.min(ratio * advantages[idx],
                                       torch.clamp(ratio, 1 - c.clip, 1 + c.clip) * advantages[idx]).mean()
                v = self.model.critic(obs_n[idx]).squeeze(-1)
                v_clipped = values[idx] + torch.clamp(v - values[idx], -c.clip, c.clip)
                value_loss = torch.max((v - returns[idx]) ** 2, (v_clipped - returns[idx]) ** 2).mean()
                loss = surrogate + c.value_coef * value_loss - c.entropy_coef * dist.entropy().sum(-1).mean()
                if c.imitation_coef:
                    loss = loss + c.imitation_coef * (dist.mean ** 2).mean()
                if warmup:  # critic only: actor parameters get no gradient (Adam skips them), lr not adapted
                    loss = c.value_coef * value_loss
                with torch.no_grad():
                    kl = (new_log_probs - log_probs[idx]).mean().neg().clamp(min=0).item()
                    if warmup:
                        pass
                    elif kl > 2.0 * c.desired_kl:
                        self.lr = max(1e-5, self.lr / 1.5)
                    elif kl < 0.5 * c.desired_kl:
                        self.lr = min(1e-3, self.lr * 1.5)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                self.optimizer.step()
                stats["value_loss"] += value_loss.item()
                stats["surrogate"] += surrogate.item()
                stats["kl"] += kl
                updates += 1
        return {k: v / updates for k, v in stats.items()} | {"lr": self.lr,
                                                              "std": float(self.model.log_std.detach().exp().mean())}


def numpy_obs(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))
