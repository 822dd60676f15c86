"""Writable parameters of the nodes that rebuild their core config on a change (safety_monitor, hand_pose,
object_pose): every one of them must change that config (a writable parameter the config ignores would be a
`ros2 param set` that succeeds and does nothing). The live path (set -> on_change -> rebuild) is exercised by the
nodes' integration tests; rates and sync tolerances are applied elsewhere (live timers, the RGB-D pairer)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

APPLIED_ELSEWHERE = {"diagnostics_rate_hz", "sync_tolerance_s"}
NODES = {"safety_monitor": "safety_config", "hand_pose": "pipeline_config", "object_pose": "live_config"}


def _changed(f: dataclasses.Field, value):
    m = f.metadata
    if m["choices"]:
        return next(c for c in m["choices"] if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, list):
        return [v * 0.9 if v else 0.05 for v in value]
    if isinstance(value, (int, float)):
        hi = m["max"] if m["max"] is not None else float("inf")
        lo = m["min"] if m["min"] is not None else -float("inf")
        middle = (lo + hi) / 2 if lo > -float("inf") and hi < float("inf") else value + 1
        for candidate in (value * 1.1 if value else 0.5, value + 1, value * 0.9, value - 1, middle):
            candidate = type(value)(candidate)
            if candidate != value and lo <= candidate <= hi:
                return candidate
    raise AssertionError(f"no other value for {f.name}={value!r}")


CASES = []
for _node, _fn in NODES.items():
    _module = importlib.import_module(f"dexstack.nodes.{_node}")
    for _f in dataclasses.fields(_module.Params):
        if not _f.metadata["read_only"] and _f.name not in APPLIED_ELSEWHERE:
            CASES.append(pytest.param(_node, _f.name, id=f"{_node}.{_f.name}"))


@pytest.mark.parametrize("node, name", CASES)
def test_every_writable_parameter_changes_the_nodes_config(node, name):
    module = importlib.import_module(f"dexstack.nodes.{node}")
    build = getattr(module, NODES[node])
    fields = {f.name: f for f in dataclasses.fields(module.Params)}
    defaults = module.Params()
    changed = dataclasses.replace(defaults, **{name: _changed(fields[name], getattr(defaults, name))})
    assert build(changed) != build(defaults), f"{node}: setting {name} leaves its config unchanged"
