"""Checkpoint loaders: TorchScript, a state_dict with a declared MLP, and rl_games (IsaacGymEnvs, DexTrack).

**A checkpoint never runs code here.**

- ``state_dict`` and ``rl_games`` files are read with ``torch.load(weights_only=True)``: torch's restricted
  unpickler rebuilds tensors, plain containers and numbers only; any other pickled global (a class, a function
  such as ``os.system``) makes it fail, and we refuse the file. The only globals allowed on top are numpy's
  scalar/array reconstructors (:data:`NUMPY_SAFE_GLOBALS`), which rl_games checkpoints use for e.g.
  ``last_mean_rewards``; they build arrays from bytes and call nothing else.
- ``torchscript`` files are read with ``torch.jit.load``, which does not use Python's pickle: its C++ unpickler
  only restores tensors and TorchScript objects, and the model's code is TorchScript (compiled graph ops, no
  Python, no imports). Loading executes nothing; running the policy executes that graph, as any network does.
  A file that is not a TorchScript archive (e.g. a plain pickle) is refused.

Every loader checks the network against the bundle: input width = the observation layout's size, output width =
the action layout's size, and a dry forward pass must give finite numbers.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import CheckpointSpec
from dexstack.policies.networks import NetworkRunner, ObsNormalizer, RlGamesActor, build_mlp

NUMPY_SAFE_GLOBALS: list[Any] = [
    np._core.multiarray.scalar, np._core.multiarray._reconstruct, np.ndarray, np.dtype,
    *{type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8)},
]


def safe_torch_load(path: Path, device: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``; :class:`PolicyError` (never a traceback) for unsafe or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        detail = lines[0][:200] if lines else "not loadable with weights_only=True"
        if "operand" in detail:  # garbage or another format, not a pickle that asks for code
            raise PolicyError(f"checkpoint {path} is not a readable torch file ({detail})") from None
        raise PolicyError(
            f"refused checkpoint {path}: it pickles Python objects beyond tensors and plain containers, which could "
            f"run code when loaded ({detail}). Save the weights as a state_dict (torch.save(model.state_dict())) "
            f"or export TorchScript.") from None
    except Exception as exc:  # noqa: BLE001 (re-raised as PolicyError: garbage can raise anything)
        # Garbage bytes reach the legacy (non-zip) unpickler, which fails with whatever it trips on first (IndexError,
        # KeyError, struct.error, ... besides RuntimeError/EOFError): all of them mean "not a torch file".
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise PolicyError(f"checkpoint {path} is not a readable torch file: {first}") from None


def _runner(module: nn.Module, obs_size: int, action_size: int, normalizer: nn.Module | None, clip: float | None,
            device: str, path: Path) -> NetworkRunner:
    runner = NetworkRunner(module, obs_size, normalizer, clip, device)
    try:
        out = runner(np.zeros(obs_size))
    except RuntimeError as exc:  # shape mismatch inside the network: TorchScript only (MLPs are checked before)
        raise PolicyError(f"checkpoint {path} does not take an observation of size {obs_size}: "
                          f"{str(exc).splitlines()[0][:200]}") from None
    if out.shape != (action_size,):
        raise PolicyError(f"checkpoint {path} outputs {out.size} values, the action layout needs {action_size}")
    if not np.all(np.isfinite(out)):
        raise PolicyError(f"checkpoint {path} outputs non-finite values for a zero observation")
    return runner


def _linear_layers(state: Mapping[str, torch.Tensor], prefix: str,
                   path: Path) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """(index, weight, bias) of ``<prefix><index>.weight`` entries, in index order."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.weight$")
    layers = []
    for key, weight in state.items():
        match = pattern.match(key)
        if match:
            i = int(match.group(1))
            if weight.ndim != 2:
                raise PolicyError(f"checkpoint {path}: '{key}' is not a Linear weight (shape {tuple(weight.shape)}); "
                                  f"only plain MLPs (no normalisation layers) are supported")
            bias = state.get(f"{prefix}{i}.bias")
            if bias is None:
                raise PolicyError(f"checkpoint {path}: '{key}' has no bias '{prefix}{i}.bias'")
            layers.append((i, weight, bias))
    return sorted(layers, key=lambda layer: layer[0])


def _check_widths(sizes: list[int], obs_size: int, action_size: int, hidden: tuple[int, ...], path: Path) -> None:
    if sizes[0] != obs_size:
        raise PolicyError(f"checkpoint {path} takes observations of size {sizes[0]}, the observation layout has "
                          f"{obs_size}")
    if sizes[-1] != action_size:
        raise PolicyError(f"checkpoint {path} outputs {sizes[-1]} actions, the action layout has {action_size}")
    if hidden and tuple(sizes[1:-1]) != tuple(hidden):
        raise PolicyError(f"checkpoint {path} has hidden layers {sizes[1:-1]}, the manifest declares {list(hidden)}")


def load_torchscript(path: Path, spec: CheckpointSpec, obs_size: int, action_size: int, clip: float | None,
                     device: str) -> NetworkRunner:
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"checkpoint {path} does not exist")
    try:
        module = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError) as exc:
        raise PolicyError(f"checkpoint {path} is not a TorchScript archive: {str(exc).splitlines()[0][:200]}") from None
    return _runner(module, obs_size, action_size, None, clip, device, path)


def load_state_dict_mlp(path: Path, spec: CheckpointSpec, obs_size: int, action_size: int, clip: float | None,
                        device: str) -> NetworkRunner:
    """A ``state_dict`` of :func:`build_mlp` (keys ``<i>.weight``/``<i>.bias``), or ``{"state_dict": ...,
    "obs_mean": ..., "obs_var": ...}`` with optional observation statistics (normalised as rl_games does)."""
    path = Path(path)
    data = safe_torch_load(path, device)
    if not isinstance(data, Mapping):
        raise PolicyError(f"checkpoint {path} is not a state_dict (a mapping of tensors), got {type(data).__name__}")
    state = data.get("state_dict", data)
    layers = _linear_layers(state, "", path)
    if not layers:
        raise PolicyError(f"checkpoint {path} holds no MLP layers ('0.weight', '2.weight', ...)")
    sizes = [layers[0][1].shape[1]] + [w.shape[0] for _, w, _ in layers]
    _check_widths(sizes, obs_size, action_size, spec.hidden, path)
    mlp = build_mlp(sizes, spec.activation)
    try:
        mlp.load_state_dict({k: v for k, v in state.items() if re.match(r"^\d+\.(weight|bias)$", k)})
    except RuntimeError as exc:
        raise PolicyError(f"checkpoint {path} does not fit an MLP {sizes}: {str(exc).splitlines()[0][:200]}") from None
    normalizer = None
    if "obs_mean" in data or "obs_var" in data:
        normalizer = _normalizer(data.get("obs_mean"), data.get("obs_var"), obs_size, path)
    return _runner(mlp, obs_size, action_size, normalizer, clip, device, path)


def _normalizer(mean: Any, var: Any, obs_size: int, path: Path) -> ObsNormalizer:
    if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
        raise PolicyError(f"checkpoint {path}: observation mean and variance must both be tensors")
    if mean.shape != (obs_size,) or var.shape != (obs_size,):
        raise PolicyError(f"checkpoint {path}: observation statistics have shapes {tuple(mean.shape)}/"
                          f"{tuple(var.shape)}, the observation layout has size {obs_size}")
    if torch.any(var < 0) or not torch.all(torch.isfinite(mean)) or not torch.all(torch.isfinite(var)):
        raise PolicyError(f"checkpoint {path}: observation statistics are not finite / non-negative")
    return ObsNormalizer(mean, var)


RL_GAMES_PREFIX = "a2c_network."
_RL_GAMES_UNSUPPORTED = ("a2c_network.rnn.", "a2c_network.a_rnn.", "a2c_network.actor_cnn.")


def load_rl_games(path: Path, spec: CheckpointSpec, obs_size: int, action_size: int, clip: float | None,
                  device: str) -> NetworkRunner:
    """An rl_games ``a2c_continuous`` checkpoint: ``{"model": state_dict, ...}`` with ``a2c_network.actor_mlp.*``,
    ``a2c_network.mu.*``, ``a2c_network.sigma`` and, when trained with ``normalize_input``,
    ``running_mean_std.running_mean/running_var/count``. The deterministic action is ``mu`` (sigma is unused)."""
    path = Path(path)
    data = safe_torch_load(path, device)
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise PolicyError(f"checkpoint {path} is not an rl_games checkpoint: no 'model' state_dict in it")
    state = data["model"]
    bad = sorted({k.split(".")[1] for k in state if k.startswith(_RL_GAMES_UNSUPPORTED)})
    if bad:
        raise PolicyError(f"checkpoint {path}: rl_games networks with {bad} are not supported (MLP actors only)")
    for key in (f"{RL_GAMES_PREFIX}mu.weight", f"{RL_GAMES_PREFIX}mu.bias"):
        if key not in state:
            raise PolicyError(f"checkpoint {path} is not an rl_games continuous actor: '{key}' is missing")
    layers = _linear_layers(state, f"{RL_GAMES_PREFIX}actor_mlp.", path)
    mu_w = state[f"{RL_GAMES_PREFIX}mu.weight"]
    first_in = layers[0][1].shape[1] if layers else mu_w.shape[1]
    sizes = [first_in] + [w.shape[0] for _, w, _ in layers] + [mu_w.shape[0]]
    _check_widths(sizes, obs_size, action_size, spec.hidden, path)
    actor = RlGamesActor(sizes[0], tuple(sizes[1:-1]), sizes[-1], spec.activation)
    actor_state = {k[len(RL_GAMES_PREFIX):]: v for k, v in state.items()
                   if k.startswith(f"{RL_GAMES_PREFIX}actor_mlp.") or k.startswith(f"{RL_GAMES_PREFIX}mu.")}
    try:
        actor.load_state_dict(actor_state)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0][:200]
        raise PolicyError(f"checkpoint {path}: actor does not fit an MLP {sizes}: {reason}") from None
    normalizer = None
    if "running_mean_std.running_mean" in state:
        normalizer = _normalizer(state["running_mean_std.running_mean"], state.get("running_mean_std.running_var"),
                                 obs_size, path)
    elif isinstance(data.get("running_mean_std"), Mapping):  # some rl_games versions also store it beside 'model'
        rms = data["running_mean_std"]
        normalizer = _normalizer(rms.get("running_mean"), rms.get("running_var"), obs_size, path)
    return _runner(actor, obs_size, action_size, normalizer, clip, device, path)


LOADERS: dict[str, Callable[..., NetworkRunner]] = {
    "torchscript": load_torchscript,
    "state_dict": load_state_dict_mlp,
    "rl_games": load_rl_games,
}


def load_network(path: Path, spec: CheckpointSpec, obs_size: int, action_size: int, clip: float | None,
                 device: str = "cpu") -> NetworkRunner:
    if spec.format not in LOADERS:
        raise PolicyError(f"checkpoint format '{spec.format}' has no loader (known: {sorted(LOADERS)})")
    return LOADERS[spec.format](Path(path), spec, obs_size, action_size, clip, device)


# ---------------------------------------------------------------------------------------------- writers
def save_rl_games_checkpoint(path: Path, actor: RlGamesActor, obs_mean: torch.Tensor | None = None,
                             obs_var: torch.Tensor | None = None, log_std: torch.Tensor | None = None,
                             extra: dict[str, Any] | None = None) -> Path:
    """Write ``actor`` as rl_games does (``{"model": {"a2c_network.*", "running_mean_std.*"}, "epoch", ...}``)."""
    model = {f"{RL_GAMES_PREFIX}{k}": v.detach().cpu() for k, v in actor.state_dict().items()}
    n_act = actor.mu.out_features
    model[f"{RL_GAMES_PREFIX}sigma"] = (torch.zeros(n_act) if log_std is None else log_std.detach().cpu()).float()
    if obs_mean is not None and obs_var is not None:
        model["running_mean_std.running_mean"] = obs_mean.detach().cpu().double()
        model["running_mean_std.running_var"] = obs_var.detach().cpu().double()
        model["running_mean_std.count"] = torch.tensor(1.0, dtype=torch.float64)
    state = {"model": model, "epoch": 0, "frame": 0, "optimizer": {}, "last_mean_rewards": 0.0, "env_state": None}
    state.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
