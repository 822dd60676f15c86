"""The safety gate between every command source and the drivers (pure core; the node is dexstack.nodes.safety_monitor)."""

from dexstack.safety.gate import GateOutput, SafetyConfig, SafetyGate

__all__ = ["GateOutput", "SafetyConfig", "SafetyGate"]
