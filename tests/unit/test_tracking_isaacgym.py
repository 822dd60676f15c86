"""Isaac Gym adapter: statically type-checked against isaacgym-stubs (Isaac Gym itself cannot run here), and the
checkpoint rl_games writes for its config loads in the policy runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dexstack.policies import load_policy, load_reference, reference_path
from dexstack.policies.manifest import write_manifest
from dexstack.policies.observation import RobotState
from dexstack.policies.runtime import PolicyRuntime
from dexstack.policies.tracking.rl_games_config import rl_games_config
from dexstack.policies.tracking.trainer import tracking_manifest
from dexstack.robot import load_description

REPO = Path(__file__).resolve().parents[2]
ADAPTER = REPO / "dexstack" / "policies" / "tracking" / "isaacgym_task.py"


def _stubs(tmp_path: Path) -> Path:
    """isaacgym-stubs 1.1rc4 names a property ``lambda`` (a syntax error for any checker): a patched copy."""
    stubs = pytest.importorskip("importlib.util").find_spec("isaacgym-stubs")
    src = Path(stubs.submodule_search_locations[0]) if stubs else None
    if src is None or not (src / "gymapi.pyi").is_file():
        pytest.skip("isaacgym-stubs is not installed (requirements/base.txt)")
    out = tmp_path / "stubs" / "isaacgym"
    out.mkdir(parents=True)
    (out / "gymapi.pyi").write_text((src / "gymapi.pyi").read_text().replace("def lambda(", "def lambda_("))
    (out / "__init__.pyi").write_text("")
    return out.parent


def test_isaacgym_adapter_type_checks_against_the_stubs(tmp_path):
    pytest.importorskip("mypy")
    stubs = _stubs(tmp_path)
    bad = tmp_path / "bad_use.py"  # negative control: the checker does see gymapi's types
    bad.write_text("from isaacgym import gymapi\np = gymapi.SimParams()\np.dt = 'fast'\n"
                   "gymapi.acquire_gym().create_sim('zero', 0, gymapi.SIM_PHYSX, p)\n")
    ini = tmp_path / "mypy.ini"
    ini.write_text("[mypy]\nfollow_imports = skip\nignore_missing_imports = True\n"
                   "[mypy-isaacgym.*]\nfollow_imports = normal\nignore_errors = True\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir",
                          str(REPO / ".mypy_cache"), str(ADAPTER), str(bad)], capture_output=True, text=True,
                         env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}, cwd=REPO)
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "isaacgym_task.py" in e], out.stdout
    assert len([e for e in errors if "bad_use.py" in e]) == 2, out.stdout


def test_rl_games_checkpoint_of_the_isaacgym_config_loads_in_the_runtime(tmp_path):
    """A checkpoint laid out as rl_games' a2c_continuous saves it for rl_games_config() (shared actor/critic MLP,
    value head, fixed sigma, input and value normalisers, optimizer and epoch entries) runs in the runtime."""
    d = load_description("panda_allegro")
    n_arm, n = len(d.arm_joints), len(d.joints)
    raw = tracking_manifest(n_arm, n - n_arm)
    cfg = rl_games_config()["params"]
    units = cfg["network"]["mlp"]["units"]
    assert units == raw["checkpoint"]["hidden"] and cfg["config"]["normalize_input"]
    obs_size = sum(f["size"] for f in raw["observation"])
    g = torch.Generator().manual_seed(0)
    sizes = [obs_size, *units]
    model = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        model[f"a2c_network.actor_mlp.{2 * i}.weight"] = torch.randn(b, a, generator=g) * 0.1
        model[f"a2c_network.actor_mlp.{2 * i}.bias"] = torch.randn(b, generator=g) * 0.1
    model["a2c_network.mu.weight"] = torch.randn(n, units[-1], generator=g) * 0.1
    model["a2c_network.mu.bias"] = torch.zeros(n)
    model["a2c_network.sigma"] = torch.full((n,), -1.0)
    model["a2c_network.value.weight"] = torch.randn(1, units[-1], generator=g)
    model["a2c_network.value.bias"] = torch.zeros(1)
    mean, var = torch.randn(obs_size, generator=g).double(), torch.rand(obs_size, generator=g).double() + 0.5
    model.update({"running_mean_std.running_mean": mean, "running_mean_std.running_var": var,
                  "running_mean_std.count": torch.tensor(1e4, dtype=torch.float64),
                  "value_mean_std.running_mean": torch.zeros(1, dtype=torch.float64),
                  "value_mean_std.running_var": torch.ones(1, dtype=torch.float64),
                  "value_mean_std.count": torch.tensor(1.0, dtype=torch.float64)})
    bundle = tmp_path / "bundle"
    write_manifest(raw, bundle)
    torch.save({"model": model, "epoch": 100, "frame": 1000, "optimizer": {"state": {}, "param_groups": []},
                "last_mean_rewards": 1.5, "env_state": None}, bundle / "model.pt")
    policy = load_policy(str(bundle), d)
    policy.reference = load_reference(reference_path("lift"), d)
    runtime = PolicyRuntime(d)
    runtime.stage(policy)
    q = policy.reference.q_at(0.0)
    targets = runtime.step(RobotState(q=q, dq=np.zeros(n), object_pose=policy.reference.object_pose_at(0.0)), 0.0)
    assert targets is not None and targets.arm.shape == (n_arm,) and targets.hand.shape == (n - n_arm,)
    assert np.all(np.isfinite(targets.arm)) and not np.allclose(np.concatenate([targets.arm, targets.hand]),
                                                                policy.reference.q_at(0.05))
