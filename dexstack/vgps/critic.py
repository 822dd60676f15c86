"""The V-GPS critic: an ensemble of Q-networks ``Q(s, task, a)`` scored by their minimum, and its bundle on disk.

A critic bundle ``policies/<name>_q/`` holds::

    critic.yaml     what it scores: robot profile, control rate, the base policy's observation layout (fields as in
                    policy.yaml), the action layout (size, joints, mode), the task vocabulary (task code = one-hot),
                    gamma, the network (hidden, activation, ensemble), the algorithm and the data it saw
    critic.pt       a plain state_dict (tensors only; read with ``torch.load(weights_only=True)``): ``q<i>.<layer>.*``
                    per ensemble member + ``obs_mean`` / ``obs_std`` (normalisation statistics of the training set)
    curves.csv      training curves; train.json: the exact command, seed, data and validation figures

Input of each Q-network: ``[(obs - obs_mean) / obs_std (clipped to +-10), one_hot(task), action]`` with the action
normalised to [-1, 1] (the policy's raw action space, clipped as the policy clips it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from dexstack.policies.checkpoints import safe_torch_load
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import ACTIVATIONS, ObsField, PolicyManifest, _obs_field
from dexstack.policies.networks import build_mlp

CRITIC_FILE = "critic.yaml"
CRITIC_TYPE = "vgps_critic"
OBS_CLIP = 10.0


def obs_field_dict(f: ObsField) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "size": f.size}
    if f.scale != (1.0,):
        out["scale"] = list(f.scale)
    if f.offset != (0.0,):
        out["offset"] = list(f.offset)
    if f.steps:
        out["steps"] = list(f.steps)
    if f.relative:
        out["relative"] = True
    return out


@dataclass(frozen=True)
class CriticSpec:
    """critic.yaml, parsed and checked."""

    name: str
    robot_profile: str
    control_rate_hz: float
    observation: tuple[ObsField, ...]
    action_size: int
    action_joints: str | tuple[str, ...]
    action_mode: str
    tasks: tuple[str, ...]
    gamma: float = 0.98
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    ensemble: int = 2
    algorithm: str = "calql"
    base_policy: str = ""
    file: str = "critic.pt"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action_size <= 0:
            raise PolicyError(f"critic '{self.name}': action_size must be positive, got {self.action_size}")
        if not 0.0 < self.gamma < 1.0:
            raise PolicyError(f"critic '{self.name}': gamma must be in (0, 1), got {self.gamma}")
        if self.ensemble < 1 or not self.hidden or any(h <= 0 for h in self.hidden):
            raise PolicyError(f"critic '{self.name}': needs ensemble >= 1 and positive hidden sizes")
        if self.activation not in ACTIVATIONS:
            raise PolicyError(f"critic '{self.name}': activation '{self.activation}' is not one of {ACTIVATIONS}")
        if len(set(self.tasks)) != len(self.tasks):
            raise PolicyError(f"critic '{self.name}': task vocabulary {list(self.tasks)} repeats a task")

    @property
    def obs_size(self) -> int:
        return sum(f.size for f in self.observation)

    @property
    def input_size(self) -> int:
        return self.obs_size + len(self.tasks) + self.action_size

    def to_yaml(self) -> dict[str, Any]:
        return {"name": self.name, "type": CRITIC_TYPE, "algorithm": self.algorithm, "base_policy": self.base_policy,
                "robot_profile": self.robot_profile, "control_rate_hz": self.control_rate_hz,
                "observation": [obs_field_dict(f) for f in self.observation],
                "action": {"size": self.action_size, "mode": self.action_mode,
                           "joints": self.action_joints if isinstance(self.action_joints, str)
                           else list(self.action_joints)},
                "tasks": list(self.tasks), "gamma": self.gamma, "file": self.file,
                "network": {"hidden": list(self.hidden), "activation": self.activation, "ensemble": self.ensemble},
                "info": self.info}

    @classmethod
    def from_yaml(cls, raw: Any, where: str) -> CriticSpec:
        try:
            if not isinstance(raw, dict) or raw.get("type") != CRITIC_TYPE:
                raise PolicyError(f"not a V-GPS critic (type must be '{CRITIC_TYPE}')")
            net = raw.get("network") or {}
            action = raw["action"]
            joints = action.get("joints", "all")
            return cls(name=str(raw.get("name", "")), robot_profile=str(raw["robot_profile"]),
                       control_rate_hz=float(raw["control_rate_hz"]),
                       observation=tuple(_obs_field(f, i) for i, f in enumerate(raw["observation"])),
                       action_size=int(action["size"]), action_mode=str(action.get("mode", "")),
                       action_joints=joints if isinstance(joints, str) else tuple(joints),
                       tasks=tuple(str(t) for t in raw.get("tasks") or ()), gamma=float(raw.get("gamma", 0.98)),
                       hidden=tuple(int(h) for h in net.get("hidden", (256, 256))),
                       activation=str(net.get("activation", "relu")), ensemble=int(net.get("ensemble", 2)),
                       algorithm=str(raw.get("algorithm", "calql")), base_policy=str(raw.get("base_policy", "")),
                       file=str(raw.get("file", "critic.pt")), info=dict(raw.get("info") or {}))
        except PolicyError as exc:
            raise PolicyError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PolicyError(f"{where}: malformed critic description ({type(exc).__name__}: {exc})") from None

    def check_compatible(self, manifest: PolicyManifest, action_size: int, robot_profile: str) -> None:
        """Refuse (PolicyError with the reason) a critic trained for another layout, action space or robot."""
        if self.robot_profile != robot_profile:
            raise PolicyError(f"critic '{self.name}' was trained for robot profile '{self.robot_profile}', "
                              f"this robot is '{robot_profile}'")
        if tuple(self.observation) != tuple(manifest.observation):
            mine = [obs_field_dict(f) for f in self.observation]
            theirs = [obs_field_dict(f) for f in manifest.observation]
            diff = next((f"field {i}: critic {a} vs policy {b}" for i, (a, b) in enumerate(zip(mine, theirs))
                         if a != b), f"{len(mine)} fields vs {len(theirs)}")
            raise PolicyError(f"critic '{self.name}' was trained on another observation layout than policy "
                              f"'{manifest.name}' ({diff})")
        if self.action_size != action_size:
            raise PolicyError(f"critic '{self.name}' scores {self.action_size} actions, policy '{manifest.name}' "
                              f"outputs {action_size}")
        joints = manifest.action.joints
        if self.action_mode != manifest.action.mode or self.action_joints != joints:
            raise PolicyError(f"critic '{self.name}' scores '{self.action_mode}' actions of {self.action_joints}, "
                              f"policy '{manifest.name}' outputs '{manifest.action.mode}' actions of {joints}")
        if abs(self.control_rate_hz - manifest.control_rate_hz) > 1e-6:
            raise PolicyError(f"critic '{self.name}' was trained at {self.control_rate_hz:g} Hz, policy "
                              f"'{manifest.name}' runs at {manifest.control_rate_hz:g} Hz")


class QEnsemble(nn.Module):
    """``ensemble`` Q-networks on the same input; :meth:`forward` gives (ensemble, batch) values."""

    def __init__(self, spec: CriticSpec):
        super().__init__()
        self.spec = spec
        sizes = [spec.input_size, *spec.hidden, 1]
        for i in range(spec.ensemble):
            self.add_module(f"q{i}", build_mlp(sizes, spec.activation))
        self.register_buffer("obs_mean", torch.zeros(spec.obs_size))
        self.register_buffer("obs_std", torch.ones(spec.obs_size))

    @property
    def members(self) -> list[nn.Module]:
        return [getattr(self, f"q{i}") for i in range(self.spec.ensemble)]

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))

    def features(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Normalised observation + task code (the part of the input that does not depend on the action)."""
        x = torch.clamp((obs - self.obs_mean) / self.obs_std, -OBS_CLIP, OBS_CLIP)
        return torch.cat([x, task], dim=-1)

    def q_features(self, feats: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([feats, action], dim=-1)
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    def forward(self, obs: torch.Tensor, task: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q_features(self.features(obs, task), action)


class Critic:
    """A loaded critic: scores K candidate actions of one state in one batched pass (min over the ensemble)."""

    def __init__(self, spec: CriticSpec, net: QEnsemble, root: Path | None = None, device: str = "cpu"):
        self.spec = spec
        self.net = net.to(device).eval()
        self.root = root
        self.device = torch.device(device)
        self._eye = torch.eye(max(1, len(spec.tasks)), device=self.device)[: len(spec.tasks)]

    @property
    def name(self) -> str:
        return self.spec.name

    def task_code(self, task: str | None) -> np.ndarray:
        code = np.zeros(len(self.spec.tasks), dtype=np.float32)
        if task in self.spec.tasks:
            code[self.spec.tasks.index(task)] = 1.0
        return code

    @torch.inference_mode()
    def score(self, obs: np.ndarray, task_code: np.ndarray, actions: torch.Tensor) -> torch.Tensor:
        """(K,) min-over-ensemble Q of ``actions`` (K, A) in state ``obs`` (D,)."""
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).reshape(1, -1)
        c = torch.as_tensor(task_code, device=self.device).reshape(1, -1)
        feats = self.net.features(o, c).expand(actions.shape[0], -1)
        return self.net.q_features(feats, actions.to(self.device, torch.float32)).min(dim=0).values


def save_critic(net: QEnsemble, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save(state, out_dir / net.spec.file)
    (out_dir / CRITIC_FILE).write_text(yaml.safe_dump(net.spec.to_yaml(), sort_keys=False, width=120))
    return out_dir


def critic_dir(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A critic bundle: a folder path (absolute, or relative to ``relative_to``), or a name among the policy
    bundle folders (policies/, $DEXSTACK_POLICY_PATH)."""
    from dexstack.policies.bundles import search_dirs  # noqa: PLC0415

    if not name_or_path or not str(name_or_path).strip():
        raise PolicyError("no critic named: give a critic bundle name or folder")
    path = Path(name_or_path).expanduser()
    candidates = [path] if path.is_absolute() else [
        *([relative_to / path] if relative_to is not None else []), Path.cwd() / path,
        *(d / path for d in search_dirs())]
    for c in candidates:
        if (c / CRITIC_FILE).is_file():
            return c.resolve()
    raise PolicyError(f"critic '{name_or_path}' not found: no {CRITIC_FILE} in {[str(c) for c in candidates]}")


def load_critic(name_or_path: str, device: str = "cpu", relative_to: Path | None = None) -> Critic:
    """Read a critic bundle; PolicyError (never a traceback) for a missing, corrupt or unsafe file."""
    root = critic_dir(name_or_path, relative_to)
    path = root / CRITIC_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid YAML ({str(exc).splitlines()[0][:200]})") from None
    spec = CriticSpec.from_yaml(raw, str(path))
    weights = root / spec.file
    state = safe_torch_load(weights, device)  # weights_only=True: a pickle asking for code is refused here
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PolicyError(f"critic weights {weights} are not a state_dict of tensors")
    net = QEnsemble(spec)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise PolicyError(f"critic weights {weights} do not fit the network of {path}: "
                          f"{str(exc).splitlines()[0][:200]}") from None
    if not all(torch.all(torch.isfinite(v)) for v in net.state_dict().values()):
        raise PolicyError(f"critic weights {weights} hold non-finite values")
    return Critic(spec, net, root, device)


def spec_for(manifest: PolicyManifest, action_size: int, tasks: tuple[str, ...], name: str, **kwargs) -> CriticSpec:
    """The critic description that fits a policy manifest (its layouts, rate and robot)."""
    return CriticSpec(name=name, robot_profile=manifest.robot_profile, control_rate_hz=manifest.control_rate_hz,
                      observation=tuple(manifest.observation), action_size=action_size,
                      action_joints=manifest.action.joints, action_mode=manifest.action.mode, tasks=tuple(tasks),
                      base_policy=manifest.name, **kwargs)
