"""Checkpoint loaders on real checkpoints written here: TorchScript, state_dict + declared MLP, rl_games format.

Also: a malicious pickle never runs, missing/corrupt checkpoints and wrong dimensions are clear PolicyErrors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dexstack.policies import PolicyError, load_policy
from dexstack.policies.manifest import write_manifest
from dexstack.policies.networks import build_mlp
from dexstack.robot import load_description
from dexstack.safety.limits import description_command_limits

D = load_description("panda_allegro")
N = len(D.joints)
OBS = 2 * N  # joint_pos + joint_vel
HIDDEN = [32, 16]


def manifest(fmt: str, file: str = "model.pt", mode: str = "absolute", **extra) -> dict:
    return {
        "name": f"test_{fmt}", "type": "network", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
        "checkpoint": {"file": file, "format": fmt, "hidden": HIDDEN, "activation": "elu"},
        "observation": [{"name": "joint_pos", "size": N}, {"name": "joint_vel", "size": N, "scale": 0.1}],
        "action": {"mode": mode, "joints": "all", "scale": 0.05, "clip": 1.0},
        **extra,
    }


def obs_of(q: np.ndarray, dq: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.concatenate([q, 0.1 * dq]), dtype=torch.float32).reshape(1, -1)


def step_once(policy, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
    from dexstack.policies import RobotState, StepContext

    ctx = StepContext(state=RobotState(q=q, dq=dq), t_s=0.0, period_s=0.05, reference=policy.reference,
                      last_target=q.copy())
    policy.reset(ctx)
    out = policy.act(ctx)
    return np.concatenate([out.arm, out.hand])


@pytest.fixture
def state():
    rng = np.random.default_rng(0)
    return D.home() + rng.uniform(-0.05, 0.05, N), rng.uniform(-0.5, 0.5, N)


def expected_targets(raw: torch.Tensor) -> np.ndarray:
    lower, upper = description_command_limits(D)  # the safety gate's command limits
    return np.clip(0.05 * np.clip(raw.detach().numpy().reshape(-1), -1, 1), lower, upper)


def test_torchscript_bundle_runs_the_scripted_network(tmp_path, state):
    torch.manual_seed(0)
    mlp = build_mlp([OBS, *HIDDEN, N])
    torch.jit.save(torch.jit.script(mlp), str(tmp_path / "model.pt"))
    write_manifest(manifest("torchscript"), tmp_path)
    policy = load_policy(str(tmp_path), D)
    q, dq = state
    np.testing.assert_allclose(step_once(policy, q, dq), expected_targets(mlp(obs_of(q, dq))), atol=1e-6)


def test_state_dict_bundle_rebuilds_the_declared_mlp_with_its_normaliser(tmp_path, state):
    torch.manual_seed(1)
    mlp = build_mlp([OBS, *HIDDEN, N], "elu")
    mean, var = torch.linspace(-1, 1, OBS), torch.linspace(0.5, 2.0, OBS)
    torch.save({"state_dict": mlp.state_dict(), "obs_mean": mean, "obs_var": var}, tmp_path / "model.pt")
    write_manifest(manifest("state_dict"), tmp_path)
    policy = load_policy(str(tmp_path), D)
    q, dq = state
    x = torch.clamp((obs_of(q, dq) - mean) / torch.sqrt(var + 1e-5), -5, 5)
    np.testing.assert_allclose(step_once(policy, q, dq), expected_targets(mlp(x)), atol=1e-6)


def rl_games_checkpoint(path: Path, seed: int = 2, obs: int = OBS, normalize: bool = True) -> tuple:
    """Written as rl_games' a2c_continuous saves (get_full_state_weights), names spelled out independently."""
    torch.manual_seed(seed)
    layers = [nn.Linear(obs, HIDDEN[0]), nn.Linear(HIDDEN[0], HIDDEN[1])]
    mu = nn.Linear(HIDDEN[1], N)
    model = {
        "a2c_network.sigma": torch.zeros(N),
        "a2c_network.actor_mlp.0.weight": layers[0].weight.data, "a2c_network.actor_mlp.0.bias": layers[0].bias.data,
        "a2c_network.actor_mlp.2.weight": layers[1].weight.data, "a2c_network.actor_mlp.2.bias": layers[1].bias.data,
        "a2c_network.mu.weight": mu.weight.data, "a2c_network.mu.bias": mu.bias.data,
        "a2c_network.value.weight": torch.randn(1, HIDDEN[1]), "a2c_network.value.bias": torch.zeros(1),
        "value_mean_std.running_mean": torch.zeros(1, dtype=torch.float64),
        "value_mean_std.running_var": torch.ones(1, dtype=torch.float64),
        "value_mean_std.count": torch.tensor(1.0, dtype=torch.float64),
    }
    mean = torch.linspace(-0.5, 0.5, obs, dtype=torch.float64)
    var = torch.linspace(0.2, 3.0, obs, dtype=torch.float64)
    if normalize:
        model.update({"running_mean_std.running_mean": mean, "running_mean_std.running_var": var,
                      "running_mean_std.count": torch.tensor(1000.0, dtype=torch.float64)})
    adam = torch.optim.Adam([p for module in (*layers, mu) for p in module.parameters()])
    checkpoint = {"model": model, "epoch": 120, "frame": 1_000_000, "optimizer": adam.state_dict(),
                  "last_mean_rewards": np.float32(12.5), "env_state": None}
    torch.save(checkpoint, path)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if normalize:
            x = torch.clamp((x - mean.float()) / torch.sqrt(var.float() + 1e-5), -5, 5)
        return mu(nn.functional.elu(layers[1](nn.functional.elu(layers[0](x)))))

    return forward


def test_rl_games_checkpoint_loads_actor_and_running_mean_std(tmp_path, state):
    forward = rl_games_checkpoint(tmp_path / "model.pt")
    write_manifest(manifest("rl_games"), tmp_path)
    policy = load_policy(str(tmp_path), D)
    q, dq = state
    np.testing.assert_allclose(step_once(policy, q, dq), expected_targets(forward(obs_of(q, dq))), atol=1e-6)


def test_rl_games_checkpoint_with_the_wrong_observation_size_is_rejected(tmp_path):
    rl_games_checkpoint(tmp_path / "model.pt", obs=OBS + 7)
    write_manifest(manifest("rl_games"), tmp_path)
    with pytest.raises(PolicyError, match=f"takes observations of size {OBS + 7}.*layout has {OBS}"):
        load_policy(str(tmp_path), D)


class _Payload:
    """Unpickling this creates a marker file: proof that a loader ran code from the checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("fmt", ["state_dict", "rl_games", "torchscript"])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, fmt):
    marker = tmp_path / "pwned"
    torch.save({"model": {"a2c_network.mu.weight": _Payload(marker)}, "state_dict": _Payload(marker)},
               tmp_path / "model.pt")
    write_manifest(manifest(fmt), tmp_path)
    with pytest.raises(PolicyError) as err:
        load_policy(str(tmp_path), D)
    assert not marker.exists(), "loading the checkpoint ran code"
    message = str(err.value)
    assert "refused" in message or "not a TorchScript archive" in message
    # The same file loaded the unsafe way really would run it: the test's payload is live.
    torch.load(tmp_path / "model.pt", weights_only=False)
    assert marker.exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    write_manifest(manifest("rl_games", file="nothing_here.pt"), tmp_path)
    with pytest.raises(PolicyError, match=r"checkpoint .*nothing_here\.pt does not exist"):
        load_policy(str(tmp_path), D)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    # Many garbage files: the unpickler fails differently on different bytes (one in ~6 once raised an IndexError).
    write_manifest(manifest("state_dict"), tmp_path)
    rng = np.random.default_rng(0)
    for size in [0, 1, 2, 8, 64, 256] * 40:
        (tmp_path / "model.pt").write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        # Bytes that happen to read as a GLOBAL opcode are refused as code-carrying pickles: also a clear error.
        with pytest.raises(PolicyError, match="not a readable torch file|refused checkpoint"):
            load_policy(str(tmp_path), D)


def test_hidden_layers_must_match_the_manifest(tmp_path):
    torch.save(build_mlp([OBS, 64, N]).state_dict(), tmp_path / "model.pt")
    write_manifest(manifest("state_dict"), tmp_path)
    with pytest.raises(PolicyError, match=r"hidden layers \[64\].*declares \[32, 16\]"):
        load_policy(str(tmp_path), D)


def test_torchscript_with_the_wrong_output_size_is_rejected(tmp_path):
    torch.jit.save(torch.jit.script(build_mlp([OBS, 8, N - 16])), str(tmp_path / "model.pt"))
    write_manifest(manifest("torchscript"), tmp_path)
    with pytest.raises(PolicyError, match=f"outputs {N - 16} values, the action layout needs {N}"):
        load_policy(str(tmp_path), D)
