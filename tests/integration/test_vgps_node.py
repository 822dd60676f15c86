"""The policy node running a vgps bundle in its own process: live vgps_* parameters (K, temperature, margin, critic)
are applied at a step boundary, bad ones are refused with the reason and the old values kept, and /diagnostics shows K,
the spread of Q over the samples and how often the choice differs from the mean action."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import JointState

from dexstack.policies.checkpoints import save_rl_games_checkpoint
from dexstack.policies.manifest import parse_manifest, write_manifest
from dexstack.policies.networks import RlGamesActor
from dexstack.robot import load_description
from dexstack.rosenv import force_localhost_dds
from dexstack.vgps.critic import QEnsemble, save_critic, spec_for
from tests.ros_harness import call_service, wait_for

D = load_description("panda_allegro")
N = len(D.joints)


def base_manifest() -> dict:
    return {"name": "tiny", "type": "tracking", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
            "reference": "lift", "checkpoint": {"file": "model.pt", "format": "rl_games", "hidden": [16]},
            "observation": [{"name": "joint_pos", "size": N}, {"name": "joint_vel", "size": N}],
            "action": {"mode": "residual", "joints": "all", "scale": 0.02, "clip": 1.0}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("vgps_node")
    save_rl_games_checkpoint(root / "tiny" / "model.pt", RlGamesActor(2 * N, (16,), N), torch.zeros(2 * N),
                             torch.ones(2 * N), torch.full((N,), -1.0))
    write_manifest(base_manifest(), root / "tiny")
    base = parse_manifest(base_manifest(), root / "tiny")
    save_critic(QEnsemble(spec_for(base, N, ("lift",), "q_ok", hidden=(8,))), root / "q_ok")
    save_critic(QEnsemble(spec_for(base, N - 1, ("lift",), "q_short", hidden=(8,))), root / "q_short")
    write_manifest({"name": "v", "type": "vgps", "robot_profile": "panda_allegro", "control_rate_hz": 20.0,
                    "params": {"base_policy": str(root / "tiny"), "critic": str(root / "q_ok"), "num_samples": 6}},
                   root / "v")
    return root


def set_param(node, name: str, value):
    if isinstance(value, str):
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    elif isinstance(value, int):
        pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    request = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
    return call_service(node, SetParameters, "/policy/set_parameters", request, timeout_s=20.0).results[0]


def test_vgps_parameters_live_with_refusals_and_diagnostics(ros_node, bundle, tmp_path):
    log = open(tmp_path / "policy.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "dexstack.nodes.policy", "--ros-args", "-r", "__node:=policy",
                             "-p", f"policy:={bundle / 'v'}", "-p", "wait_for_safety:=false"],
                            env=force_localhost_dds(dict(os.environ)),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    diags: list[dict] = []

    def on_diag(msg: DiagnosticArray):
        for status in msg.status:
            if status.name.endswith("policy"):
                diags.append({kv.key: kv.value for kv in status.values})

    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    joints = ros_node.create_publisher(JointState, "/joint_states", 10)
    q = D.home()
    timer = ros_node.create_timer(0.02, lambda: joints.publish(JointState(
        name=list(D.joints), position=q.tolist(), velocity=[0.0] * N)))
    try:
        assert wait_for(lambda: any(float(d.get("vgps_q_spread_mean", 0)) > 0 for d in diags), 40.0), \
            (tmp_path / "policy.log").read_text()[-3000:]
        d = diags[-1]
        assert d["vgps_k"] == "6" and d["vgps_critic"] == "q_ok" and d["type"] == "vgps"
        assert d["vgps_choice_differs_from_mean"] not in ("", "n/a")

        for name, value, reason in (("vgps_num_samples", -2, ""), ("vgps_num_samples", 100000, ""),
                                    ("vgps_temperature", -0.5, "vgps_temperature must be >= 0"),
                                    ("vgps_margin", -0.5, "vgps_margin must be"),
                                    ("vgps_margin", float("nan"), "vgps_margin must be"),
                                    ("vgps_critic", str(bundle / "q_short"), f"scores {N - 1} actions"),
                                    ("vgps_critic", str(bundle / "nowhere"), "not found")):
            result = set_param(ros_node, name, value)
            assert not result.successful, (name, value)
            assert reason in result.reason, result.reason
        result = set_param(ros_node, "vgps_num_samples", 3)
        assert result.successful, result.reason
        n = len(diags)
        assert wait_for(lambda: len(diags) > n + 1 and diags[-1]["vgps_k"] == "3", 10.0), diags[-1:]
        assert diags[-1]["vgps_critic"] == "q_ok"  # the refused critics changed nothing
        assert diags[-1]["vgps_margin"] == "0"  # the bundle's default
        # a margin needs a temperature 0 choice: refused while a temperature is set, then accepted
        assert set_param(ros_node, "vgps_temperature", 0.5).successful
        result = set_param(ros_node, "vgps_margin", 0.25)
        assert not result.successful and "temperature 0" in result.reason, result.reason
        assert set_param(ros_node, "vgps_temperature", 0.0).successful
        result = set_param(ros_node, "vgps_margin", 0.25)
        assert result.successful, result.reason
        n = len(diags)
        assert wait_for(lambda: len(diags) > n + 1 and diags[-1]["vgps_margin"] == "0.25", 10.0), diags[-1:]
        assert diags[-1]["vgps_k"] == "3"
    finally:
        ros_node.destroy_timer(timer)
        proc.send_signal(2)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
    assert code == 0, (tmp_path / "policy.log").read_text()[-3000:]
    time.sleep(0.1)
