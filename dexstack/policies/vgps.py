"""``vgps``: value-guided action re-ranking (V-GPS, Nakamoto et al. 2024) around any stochastic policy bundle.

Each step: one forward of the base policy's actor gives the Gaussian ``N(mu(s), sigma)``; K candidates are drawn
from it in one batch (with ``include_mean`` the first candidate is ``mu`` itself); the critic scores all K in one
batched pass (``min`` over its ensemble) and the step executes::

    temperature == 0:  a* = argmax_k Q(s, a_k)
    temperature  > 0:  a* ~ softmax(Q(s, a_k) / temperature)

The chosen raw action goes through the base policy's action layout (residual/delta/absolute targets within the joint
limits) and then, like every command, through the safety monitor. ``selection: random`` (uniform among the same K
candidates) is the paper's control and needs no critic; K = 1 without the mean is plain sampling of the base policy.

Bundle (``policies/<name>/policy.yaml``)::

    name: track_cube_vgps
    type: vgps
    robot_profile: panda_allegro
    control_rate_hz: 20.0          # must equal the base policy's
    params:
      base_policy: track_cube      # a bundle whose checkpoint defines an action distribution
      critic: track_cube_q         # a critic bundle (dexstack.vgps.critic), checked against the base's layouts
      num_samples: 10              # K
      temperature: 0.0
      include_mean: true
      selection: critic            # critic | random
      seed: 0
      std_scale: 1.0               # candidates ~ N(mu, (std_scale * sigma)^2); 1 = the policy's own Gaussian
      margin: 0.0                  # argmax only if it beats the mean action's Q by more than this (Q units)

Conservative selection (``margin``, needs ``include_mean`` and ``selection: critic`` with temperature 0): with the
mean action ``mu`` as candidate 0, the step executes::

    k* = argmax_k Q(s, a_k)
    a* = a_k*   if Q(s, a_k*) - Q(s, mu) > margin
         mu     otherwise

``margin = 0`` is plain argmax (``argmax`` returns the first maximum, so a tie already keeps ``mu``). The margin is
in **absolute Q units**, not relative to the per-step spread (e.g. ``std_k Q(s, a_k)``), because:

- the Q scale is fixed and meaningful here: sparse reward 1 on the last 3 steps of a success, gamma 0.98, so
  ``Q(s_t, a) ~ P(success | s_t, a) * gamma^(T-3-t) * (1 + gamma + gamma^2)`` lies in [0, ~2.94] (T: the episode's
  length): a margin is a predicted gain in discounted success, e.g. 0.2 ~ 7% of a sure success at the end; the
  margin ships in the same bundle as the critic it is tuned for;
- what the deviation costs does not shrink with the spread: a sample instead of ``mu`` is ``std_scale * sigma *
  eps`` of step-to-step noise that the deployed gate's jerk filter turns into lag (issue 13). A relative rule
  ``Q(a_k*) - Q(mu) > margin * std_k Q`` would accept a 0.001 gain when the candidates' Q values differ by 0.001,
  i.e. exactly when the ranking is critic noise (a Cal-QL ensemble of 2 is not calibrated to 1e-3), and it is
  scale-free only in a way that ignores how much the critic actually expects to gain;
- it stays defined for every K >= 2 (a std over 2 candidates is one difference) and for a flat critic (std 0).

The costs: Q is discounted towards the episode's end, so a fixed margin is stricter early in an episode (a sure
success 150 steps before the end is worth 2.94 * 0.98^150 ~ 0.14), i.e. the rule lets the critic deviate mostly in
the last seconds of a reference; and the margin does not transfer across ``std_scale`` (narrower candidates have a
smaller Q range: spread 0.63 at std_scale 1, 0.14 at 0.3; per-step gain over the mean p90 0.19 vs 0.10, on the
validation references), so it is chosen per (critic, std_scale) on the validation references.
``vgps_q_gain_p50/p90`` in the diagnostics (``max_k Q(s, a_k) - Q(s, mu)`` per step) give its scale. Measured
(issue 13, bench/results/vgps_margin_2026-12-07/): no margin beat the mean action through the deployed gate, so
``track_cube_vgps`` keeps margin 0.

Only checkpoints that define a distribution are accepted: rl_games actors (``a2c_network.sigma`` = the
state-independent log-std, as rl_games' ``fixed_sigma`` saves it) and state_dict MLPs that carry a ``log_std``
tensor. TorchScript exports and state_dicts without a log-std are deterministic and refused with that reason.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dexstack.policies.action import JointTargets
from dexstack.policies.bundles import load_bundle_manifest
from dexstack.policies.checkpoints import RL_GAMES_PREFIX, safe_torch_load
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.networks import NetworkRunner
from dexstack.policies.observation import StepContext
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.registry import Policy, build_policy, register_policy
from dexstack.robot.description import RobotDescription

MAX_SAMPLES = 1024  # more candidates than this is a mistake (the paper found K = 100 already worse than 10-50)
SELECTIONS = ("critic", "random")
PARAM_KEYS = ("base_policy", "critic", "num_samples", "temperature", "include_mean", "selection", "seed", "std_scale",
              "margin")
MAX_STD_SCALE = 4.0


@dataclass(frozen=True)
class VgpsConfig:
    base_policy: str
    critic: str = ""
    num_samples: int = 10
    temperature: float = 0.0
    include_mean: bool = True
    selection: str = "critic"
    seed: int = 0
    # The Gaussian's std for the candidates, as a multiple of the policy's: PPO's exploration std passed through the
    # deployed gate's jerk filter costs more tracking than the critic's choice wins back (issue 13, 2026-12-07).
    std_scale: float = 1.0
    # Execute the argmax only if its Q beats the mean action's (candidate 0) by more than this, in Q units (see the
    # module docstring); 0 = plain argmax.
    margin: float = 0.0

    def __post_init__(self) -> None:
        m = self.margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0:
            raise PolicyError(f"margin must be a finite number >= 0 (Q units; 0 = plain argmax), got {m!r}")
        s = self.std_scale
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
                or not 0 < s <= MAX_STD_SCALE:
            raise PolicyError(f"std_scale must be a number in (0, {MAX_STD_SCALE:g}], got {s!r}")
        k = self.num_samples
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_SAMPLES:
            raise PolicyError(f"num_samples (K) must be an integer in [1, {MAX_SAMPLES}], got {k!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise PolicyError(f"temperature must be a finite number >= 0 (0 = argmax), got {t!r}")
        if self.selection not in SELECTIONS:
            raise PolicyError(f"selection '{self.selection}' is not one of {list(SELECTIONS)}")
        if self.selection == "critic" and not self.critic:
            raise PolicyError("selection 'critic' needs a critic bundle (params.critic)")
        if m > 0:
            if not self.include_mean:
                raise PolicyError(f"margin {m:g} compares the argmax with the mean action's Q: it needs include_mean "
                                  f"(the mean as candidate 0)")
            if self.selection != "critic":
                raise PolicyError(f"margin {m:g} compares Q values: it needs selection 'critic', not "
                                  f"'{self.selection}'")
            if self.temperature != 0:
                raise PolicyError(f"margin {m:g} applies to the argmax choice (temperature 0), got temperature "
                                  f"{self.temperature:g}")
        if not self.base_policy:
            raise PolicyError("a vgps policy needs params.base_policy (the stochastic bundle it re-ranks)")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> VgpsConfig:
        unknown = set(params) - set(PARAM_KEYS)
        if unknown:
            raise PolicyError(f"vgps params: unknown keys {sorted(unknown)} (allowed: {list(PARAM_KEYS)})")
        values = {k: params[k] for k in PARAM_KEYS if k in params}
        for key in ("base_policy", "critic", "selection"):
            if key in values:
                values[key] = "" if values[key] is None else str(values[key])
        if "temperature" in values and isinstance(values["temperature"], int) \
                and not isinstance(values["temperature"], bool):
            values["temperature"] = float(values["temperature"])
        if "seed" in values:
            values["seed"] = int(values["seed"])
        for key in ("std_scale", "margin"):
            if key in values and isinstance(values[key], int) and not isinstance(values[key], bool):
                values[key] = float(values[key])
        if "include_mean" in values:
            values["include_mean"] = bool(values["include_mean"])
        return cls(**values)


class GaussianHead:
    """``obs -> (mu, sigma)`` of a loaded actor: the checkpoint's normaliser, the mean network, the log-std."""

    def __init__(self, runner: NetworkRunner, log_std: torch.Tensor, clip: float | None):
        self.module, self.normalizer, self.device = runner.module, runner.normalizer, runner.device
        self.std = log_std.detach().to(self.device, torch.float32).exp()
        self.clip = clip

    @torch.inference_mode()
    def mean(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1), device=self.device)
        if self.normalizer is not None:
            x = self.normalizer(x)
        y = self.module(x)
        return (y[0] if isinstance(y, (tuple, list)) else y).reshape(-1)

    @torch.inference_mode()
    def candidates(self, obs: np.ndarray, k: int, generator: torch.Generator, include_mean: bool,
                   std_scale: float = 1.0) -> torch.Tensor:
        """(k, A) actions: one forward for the mean, k Gaussian draws (std ``std_scale`` times the policy's) in one
        batch, clipped as the policy clips."""
        mu = self.mean(obs)
        eps = torch.randn((k, mu.shape[0]), generator=generator, device=self.device)
        a = mu + (std_scale * self.std) * eps
        if include_mean:
            a[0] = mu
        return a if self.clip is None else torch.clamp(a, -self.clip, self.clip)


def load_log_std(manifest: PolicyManifest, action_size: int, device: str) -> torch.Tensor:
    """The state-independent log-std of a bundle's checkpoint; PolicyError if it defines no distribution."""
    ckpt = manifest.checkpoint
    if ckpt is None:
        raise PolicyError(f"base policy '{manifest.name}' ({manifest.type}) has no checkpoint, so no action "
                          f"distribution to sample from")
    path = manifest.checkpoint_path()
    if ckpt.format == "torchscript":
        raise PolicyError(f"base policy '{manifest.name}' is a TorchScript export: it gives one deterministic action "
                          f"and no distribution to sample K candidates from (export an rl_games checkpoint with its "
                          f"sigma, or a state_dict with 'log_std')")
    data = safe_torch_load(path, device)
    if ckpt.format == "rl_games":
        log_std = (data.get("model") or {}).get(f"{RL_GAMES_PREFIX}sigma") if isinstance(data, dict) else None
        what = f"'{RL_GAMES_PREFIX}sigma'"
    else:
        log_std = data.get("log_std") if isinstance(data, dict) else None
        what = "'log_std'"
    if not isinstance(log_std, torch.Tensor):
        raise PolicyError(f"base policy '{manifest.name}': checkpoint {path} has no {what} (log-std), so it is "
                          f"deterministic and defines no action distribution to sample from")
    if log_std.numel() == 1:
        log_std = log_std.reshape(1).expand(action_size)
    if tuple(log_std.shape) != (action_size,) or not torch.all(torch.isfinite(log_std)):
        raise PolicyError(f"base policy '{manifest.name}': log-std in {path} has shape {tuple(log_std.shape)} or "
                          f"non-finite values; the action layout has {action_size} actions")
    if torch.all(log_std.exp() < 1e-6):
        raise PolicyError(f"base policy '{manifest.name}': its std is ~0 (log-std {float(log_std.max()):.1f}): all "
                          f"K samples would be the same action")
    return log_std.float()


def _resolve_bundle(name: str, root: Path | None) -> str:
    if root is not None and (name.startswith(".") or "/" in name) and not Path(name).is_absolute():
        candidate = (root / name).resolve()
        if candidate.exists():
            return str(candidate)
    return name


@register_policy("vgps")
class VgpsPolicy(Policy):
    def __init__(self, manifest: PolicyManifest, description: RobotDescription,
                 reference: ReferenceTrajectory | None, base: Policy, head: GaussianHead, critic, config: VgpsConfig):
        # the base's observation/action layouts and rate, under this bundle's name, folder and params (its weights
        # are the base's business: no checkpoint here)
        layout = dataclasses.replace(base.manifest, name=manifest.name, type=manifest.type, checkpoint=None,
                                     description=manifest.description, params=manifest.params, root=manifest.root)
        super().__init__(layout, description, reference)
        self.bundle_manifest = manifest
        self.base = base
        self.head = head
        self.critic = critic
        self.config = config
        self.generator = torch.Generator(device=head.device)
        self._last_action = np.zeros(self.action.size)
        self._last_effective = np.zeros(self.action.size)
        self._task_code = np.zeros(0, dtype=np.float32)
        dev = head.device
        idx = self.action.index
        self._scale = torch.tensor(np.array(self.action.scale), dtype=torch.float32, device=dev)
        self._lower = torch.as_tensor(self.action.lower[idx], dtype=torch.float32, device=dev)
        self._upper = torch.as_tensor(self.action.upper[idx], dtype=torch.float32, device=dev)
        self._last_action_slice = None  # where the observation holds the previous action (the critic sees it acted)
        offset = 0
        for f in self.manifest.observation:
            if f.name == "last_action" and f.scale == (1.0,) and f.offset == (0.0,):
                self._last_action_slice = slice(offset, offset + f.size)
            offset += f.size
        self._q_spread: deque[float] = deque(maxlen=200)
        self._q_gain: deque[float] = deque(maxlen=200)  # max_k Q - Q(mean) per step (with include_mean)
        self._differs: deque[float] = deque(maxlen=200)
        self._rerank_ms: deque[float] = deque(maxlen=200)
        self.reseed(config.seed)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_manifest(cls, manifest, description, device, reference):
        from dexstack.vgps.critic import load_critic  # noqa: PLC0415 (the critic package imports the policies)

        config = VgpsConfig.from_params(manifest.params)
        base_manifest = load_bundle_manifest(_resolve_bundle(config.base_policy, manifest.root))
        if base_manifest.type == "vgps":
            raise PolicyError(f"base policy '{base_manifest.name}' is itself a vgps policy: wrap the stochastic "
                              f"bundle directly")
        if abs(base_manifest.control_rate_hz - manifest.control_rate_hz) > 1e-6:
            raise PolicyError(f"control_rate_hz {manifest.control_rate_hz:g} differs from base policy "
                              f"'{base_manifest.name}' ({base_manifest.control_rate_hz:g} Hz)")
        base = build_policy(base_manifest, description, device, reference)
        network = getattr(base, "network", None)
        if not isinstance(network, NetworkRunner):
            raise PolicyError(f"base policy '{base_manifest.name}' ({base_manifest.type}) is not a network policy: "
                              f"it defines no action distribution")
        log_std = load_log_std(base_manifest, base.action.size, device)
        head = GaussianHead(network, log_std, base_manifest.action.clip)
        critic = None
        if config.critic:
            critic = load_critic(config.critic, device, manifest.root)
            critic.spec.check_compatible(base_manifest, base.action.size, description.profile.name)
        policy = cls(manifest, description, base.reference, base, head, critic, config)
        policy.check_task()
        return policy

    def check_task(self) -> None:
        """The reference's task must be one the critic knows (its task code would be all zeros otherwise)."""
        if self.critic is None:
            return
        kind = self.reference.kind if self.reference is not None else ""
        if self.critic.spec.tasks and kind not in self.critic.spec.tasks:
            raise PolicyError(f"critic '{self.critic.name}' was trained on tasks {list(self.critic.spec.tasks)}; "
                              f"reference '{getattr(self.reference, 'name', None)}' is task '{kind}'")
        self._task_code = self.critic.task_code(kind)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))
        self._np_rng = np.random.default_rng(int(seed))

    # ------------------------------------------------------------------ stepping
    def reset(self, ctx: StepContext) -> None:
        self._last_action = np.zeros(self.action.size)
        self._last_effective = np.zeros(self.action.size)
        if self.critic is not None:
            ref = ctx.reference if ctx.reference is not None else self.reference
            self._task_code = self.critic.task_code(ref.kind if ref is not None else "")

    def effective(self, raw: torch.Tensor, base: np.ndarray) -> torch.Tensor:
        """Raw actions as they act: the joint-limit clip of the targets mapped back to raw units. Recorded episodes
        only show this (a target at a limit hides how far past it the raw action pointed), so the critic scores it."""
        b = torch.as_tensor(base, dtype=raw.dtype, device=raw.device)
        q = torch.minimum(torch.maximum(b + self._scale * raw, self._lower), self._upper)
        return (q - b) / self._scale

    def select(self, obs: np.ndarray, base: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """One V-GPS choice for observation ``obs`` (``base``: what the action layout adds the raw action to, at
        the action's joints): (raw action, {"index", "q_spread", "q_gain"}); ``q_gain`` = max_k Q - Q(mean action),
        NaN without the mean among the candidates or without a critic."""
        c = self.config
        cands = self.head.candidates(obs, c.num_samples, self.generator, c.include_mean, c.std_scale)
        t0 = time.perf_counter()
        spread, gain = 0.0, float("nan")
        if c.selection == "random" or self.critic is None:
            index = int(self._np_rng.integers(c.num_samples))
        else:
            scored = cands if base is None else self.effective(cands, base)
            critic_obs = obs
            if self._last_action_slice is not None:
                critic_obs = obs.copy()
                critic_obs[self._last_action_slice] = self._last_effective
            q = self.critic.score(critic_obs, self._task_code, scored)
            spread = float(q.max() - q.min())
            if c.include_mean:
                gain = float(q.max() - q[0])
            if c.temperature == 0.0:
                index = int(torch.argmax(q))
                # conservative rule: leave the mean action (candidate 0) only for a predicted gain above the margin
                if c.margin > 0 and index != 0 and not gain > c.margin:
                    index = 0
            else:
                p = torch.softmax(q / c.temperature, dim=0).double().cpu().numpy()
                index = int(self._np_rng.choice(c.num_samples, p=p / p.sum()))
        self._rerank_ms.append(1000.0 * (time.perf_counter() - t0))
        raw = cands[index].to("cpu", torch.float64).numpy()
        if base is not None:
            self._last_effective = self.effective(cands[index:index + 1], base)[0].to("cpu", torch.float64).numpy()
        return raw, {"index": index, "q_spread": spread, "q_gain": gain}

    def act(self, ctx: StepContext) -> JointTargets:
        ctx.last_action = self._last_action
        obs = self.observation.build(ctx)
        raw, info = self.select(obs, self.action.base(ctx)[self.action.index])
        if not np.all(np.isfinite(raw)):
            raise PolicyError(f"policy '{self.name}' produced non-finite actions")
        self._q_spread.append(info["q_spread"])
        if not math.isnan(info["q_gain"]):
            self._q_gain.append(info["q_gain"])
        # the mean is candidate 0 when included; otherwise "differs" = not the candidate nearest the mean
        self._differs.append(float(info["index"] != 0) if self.config.include_mean else float("nan"))
        self._last_action = raw
        return self.action.targets(raw, ctx)

    def diagnostics(self) -> dict[str, str]:
        c = self.config
        spread = np.array(self._q_spread) if self._q_spread else np.zeros(1)
        differs = [d for d in self._differs if not math.isnan(d)]
        gain = np.array(self._q_gain)
        return {"vgps_k": str(c.num_samples), "vgps_temperature": f"{c.temperature:g}",
                "vgps_margin": f"{c.margin:g}", "vgps_std_scale": f"{c.std_scale:g}",
                "vgps_q_gain_p50": f"{np.median(gain):.4f}" if gain.size else "n/a",
                "vgps_q_gain_p90": f"{np.percentile(gain, 90):.4f}" if gain.size else "n/a",
                "vgps_selection": c.selection, "vgps_critic": self.critic.name if self.critic else "",
                "vgps_base_policy": self.base.name,
                "vgps_q_spread_mean": f"{spread.mean():.4f}", "vgps_q_spread_max": f"{spread.max():.4f}",
                "vgps_choice_differs_from_mean": f"{np.mean(differs):.3f}" if differs else "n/a",
                "vgps_rerank_ms_p50": f"{np.median(self._rerank_ms):.3f}" if self._rerank_ms else "0"}
