"""Offline critic training for V-GPS: Cal-QL (default) or IQL, on :class:`~dexstack.vgps.dataset.Transitions`.

The critic is an ensemble (2) of Q-networks (:class:`~dexstack.vgps.critic.QEnsemble`). The policy whose actions the
critic will re-rank is the base policy itself (its Gaussian ``pi``), so the TD target samples ``pi``::

    y = r + gamma * (1 - done) * min_j Qbar_j(s', a'),   a' ~ pi(.|s')                 (target nets, Polyak tau)

**Cal-QL** (Nakamoto et al. 2023) = CQL's conservative term with the policy's Q-values bounded below by the
Monte-Carlo return of the data (so the critic is pessimistic about out-of-distribution actions but not below what
the behaviour actually earned)::

    L_i = (Q_i(s,a) - y)^2 + alpha * ( T * logsumexp_{a~} [ (Q~_i(s,a~) - log mu(a~)) / T ] - Q_i(s,a) )
    a~ in { n uniform in [-1,1]^A,  n ~ pi(.|s),  n ~ pi(.|s') },  Q~ = max(Q_i, mc_return) for the pi samples

**IQL** (Kostrikov et al. 2021) as the option: ``V`` by expectile regression (tau_e) on ``min_j Qbar_j(s,a)``, and
``Q_i`` regressed on ``r + gamma (1 - done) V(s')``; no action sampling at all.

Every sampled action is first mapped to how it acts (clamped to the per-state range where joint limits clip the
target), exactly as the ``vgps`` policy does before scoring.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dexstack.policies.networks import build_mlp
from dexstack.vgps.critic import CriticSpec, QEnsemble
from dexstack.vgps.dataset import Transitions

ALGORITHMS = ("calql", "iql")


@dataclass(frozen=True)
class TrainConfig:
    algorithm: str = "calql"
    steps: int = 10_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    tau: float = 0.005  # Polyak factor of the target networks
    cql_alpha: float = 1.0
    cql_actions: int = 10  # n per source (uniform, pi(s), pi(s'))
    cql_temperature: float = 1.0
    calibrated: bool = True  # Cal-QL's MC lower bound (False: plain CQL)
    expectile: float = 0.7  # IQL
    weight_decay: float = 0.0
    seed: int = 0
    log_every: int = 250

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm '{self.algorithm}' is not one of {list(ALGORITHMS)}")
        if self.steps <= 0 or self.batch_size <= 0 or self.cql_actions <= 0 or self.log_every <= 0:
            raise ValueError("steps, batch_size, cql_actions and log_every must be positive")
        if not 0 < self.tau <= 1 or not 0 < self.expectile < 1 or self.learning_rate <= 0:
            raise ValueError("tau in (0, 1], expectile in (0, 1), learning_rate > 0")


class GaussianPolicy(nn.Module):
    """Batched ``pi(.|s) = N(mu(s), sigma)`` of the base policy (frozen): normaliser + mean network + log-std."""

    def __init__(self, module: nn.Module, normalizer: nn.Module | None, log_std: torch.Tensor):
        super().__init__()
        self.module = copy.deepcopy(module).float().eval()
        self.normalizer = None if normalizer is None else copy.deepcopy(normalizer).float().eval()
        self.register_buffer("log_std", log_std.detach().float().clone())
        for p in self.parameters():
            p.requires_grad_(False)

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs if self.normalizer is None else self.normalizer(obs)
        y = self.module(x)
        return y[0] if isinstance(y, (tuple, list)) else y

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n, A) samples and their (B, n) log-densities (of the unclipped Gaussian)."""
        mu = self.mean(obs).unsqueeze(1)
        std = self.log_std.exp()
        eps = torch.randn((obs.shape[0], n, mu.shape[-1]), generator=generator)
        logp = (-0.5 * eps ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return mu + std * eps, logp


def _bounded(a: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(B, n, A) actions clamped to each state's acting range (B, A)."""
    return torch.minimum(torch.maximum(a, low.unsqueeze(1)), high.unsqueeze(1))


def _q_many(net: QEnsemble, feats: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(E, B, n) values of n actions per state (features (B, F), actions (B, n, A))."""
    b, n, _ = actions.shape
    f = feats.unsqueeze(1).expand(b, n, feats.shape[-1]).reshape(b * n, -1)
    return net.q_features(f, actions.reshape(b * n, -1)).reshape(-1, b, n)


def normalization_stats(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return obs.mean(0), obs.std(0) + 1e-3


class CriticTrainer:
    def __init__(self, spec: CriticSpec, data: Transitions, policy: GaussianPolicy | None, config: TrainConfig):
        if config.algorithm == "calql" and policy is None:
            raise ValueError("Cal-QL samples the base policy: give its GaussianPolicy")
        if data.obs.shape[1] != spec.obs_size or data.actions.shape[1] != spec.action_size:
            raise ValueError(f"data has obs {data.obs.shape[1]} / actions {data.actions.shape[1]}, the critic "
                             f"expects {spec.obs_size} / {spec.action_size}")
        if tuple(data.tasks) != tuple(spec.tasks):
            raise ValueError(f"data tasks {data.tasks} differ from the critic's {spec.tasks}")
        torch.manual_seed(config.seed)
        self.spec, self.config, self.policy = spec, config, policy
        self.net = QEnsemble(spec)
        self.net.set_stats(*normalization_stats(data.obs))
        self.target = copy.deepcopy(self.net)
        for p in self.target.parameters():
            p.requires_grad_(False)
        params = list(self.net.parameters())
        self.value = None
        if config.algorithm == "iql":
            self.value = build_mlp([spec.obs_size + len(spec.tasks), *spec.hidden, 1], spec.activation)
            params += list(self.value.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.data = {k: torch.as_tensor(getattr(data, k)) for k in (
            "obs", "actions", "rewards", "dones", "mc_returns", "next_obs", "task_codes", "action_low",
            "action_high", "next_action_low", "next_action_high")}
        self.n = len(data)
        self.steps_done = 0

    def batch(self) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.n, (self.config.batch_size,), generator=self.generator)
        return {k: v[idx] for k, v in self.data.items()}

    def losses(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        gamma = self.spec.gamma
        feats = self.net.features(b["obs"], b["task_codes"])
        q_data = self.net.q_features(feats, b["actions"])  # (E, B)
        stats: dict[str, float] = {}
        if c.algorithm == "iql":
            with torch.no_grad():
                q_t = self.target(b["obs"], b["task_codes"], b["actions"]).min(0).values
                next_feats = self.net.features(b["next_obs"], b["task_codes"])
                y = b["rewards"] + gamma * (1 - b["dones"]) * self.value(next_feats).squeeze(-1)
            v = self.value(feats.detach()).squeeze(-1)
            diff = q_t - v
            weight = torch.where(diff > 0, c.expectile, 1 - c.expectile)
            v_loss = (weight * diff ** 2).mean()
            td = ((q_data - y) ** 2).mean()
            stats.update(v_loss=float(v_loss.detach()), v_mean=float(v.detach().mean()))
            loss = td + v_loss
        else:
            with torch.no_grad():
                a_next, _ = self.policy.sample(b["next_obs"], 1, self.generator)
                a_next = _bounded(a_next, b["next_action_low"], b["next_action_high"])
                next_feats = self.target.features(b["next_obs"], b["task_codes"])
                q_next = _q_many(self.target, next_feats, a_next).min(0).values[:, 0]
                y = b["rewards"] + gamma * (1 - b["dones"]) * q_next
            td = ((q_data - y) ** 2).mean()
            n, bsz, dim = c.cql_actions, b["obs"].shape[0], self.spec.action_size
            a_rand = torch.rand((bsz, n, dim), generator=self.generator) * 2 - 1
            a_pi, logp_pi = self.policy.sample(b["obs"], n, self.generator)
            a_pi_next, logp_next = self.policy.sample(b["next_obs"], n, self.generator)
            lo, hi = b["action_low"], b["action_high"]
            q_rand = _q_many(self.net, feats, _bounded(a_rand, lo, hi))
            q_pi = _q_many(self.net, feats, _bounded(a_pi, lo, hi))
            q_pi_next = _q_many(self.net, feats, _bounded(a_pi_next, lo, hi))
            if c.calibrated:  # Cal-QL: never push the policy's values below the return the data earned
                mc = b["mc_returns"].view(1, -1, 1)
                bounded_frac = float((q_pi < mc).float().mean())
                q_pi, q_pi_next = torch.maximum(q_pi, mc), torch.maximum(q_pi_next, mc)
                stats["mc_bound_active"] = bounded_frac
            log_uniform = -dim * math.log(2.0)
            cat = torch.cat([q_rand - log_uniform, q_pi_next - logp_next.unsqueeze(0), q_pi - logp_pi.unsqueeze(0)],
                            dim=-1)
            t = c.cql_temperature
            ood = torch.logsumexp(cat / t, dim=-1) * t  # (E, B)
            cql = (ood - q_data).mean()
            loss = td + c.cql_alpha * cql
            stats.update(cql_gap=float(cql.detach()), q_pi=float(q_pi.detach().mean()))
        stats.update(td_loss=float(td.detach()), q_data=float(q_data.detach().mean()), target=float(y.mean()))
        return loss, stats

    def step(self) -> dict[str, float]:
        loss, stats = self.losses(self.batch())
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.optimizer.step()
        with torch.no_grad():
            for p, pt in zip(self.net.parameters(), self.target.parameters()):
                pt.lerp_(p, self.config.tau)
        self.steps_done += 1
        return stats

    @torch.no_grad()
    def validate(self, data: Transitions) -> dict[str, float]:
        """On held-back episodes: TD error against the MC return, and how Q orders states by their return."""
        obs, codes, act = (torch.as_tensor(x) for x in (data.obs, data.task_codes, data.actions))
        q = self.net(obs, codes, act).min(0).values.numpy()
        mc = data.mc_returns
        corr = float(np.corrcoef(q, mc)[0, 1]) if np.std(q) > 0 and np.std(mc) > 0 else 0.0
        return {"val_q_mc_mae": float(np.mean(np.abs(q - mc))), "val_q_mc_corr": corr, "val_q_mean": float(q.mean())}

    def train(self, validation: Transitions | None = None,
              log: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        rows, acc, t0 = [], {}, time.monotonic()
        for i in range(self.config.steps):
            for k, v in self.step().items():
                acc[k] = acc.get(k, 0.0) + v
            if (i + 1) % self.config.log_every == 0 or i + 1 == self.config.steps:
                m = (i + 1) % self.config.log_every or self.config.log_every
                row = {"step": i + 1, "wall_s": round(time.monotonic() - t0, 1),
                       **{k: v / m for k, v in acc.items()}}
                if validation is not None and len(validation):
                    row.update(self.validate(validation))
                rows.append(row)
                acc = {}
                if log is not None:
                    log(row)
        return rows
