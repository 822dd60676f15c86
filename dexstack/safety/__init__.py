"""The safety gate between every command source and the drivers (pure core; node: dexstack.nodes.safety_monitor)."""

from dexstack.safety.collision import CollisionConfig, CollisionModel
from dexstack.safety.gate import GateOutput, SafetyConfig, SafetyGate, load_safety_config

__all__ = ["CollisionConfig", "CollisionModel", "GateOutput", "SafetyConfig", "SafetyGate", "load_safety_config"]
