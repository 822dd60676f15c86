"""The joint limits a command may reach: the description's limits shrunk by the safety gate's
``position_margin_rad`` (``config/safety.yaml``). One definition for the gate (it clamps into them) and for every
action path that produces targets (the policy runtime's ActionMapper, the batched training task), so that a
policy's targets are already inside what the gate passes and the gate's clamp only fires on real slips.

No rclpy here (the policy runtime imports it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def command_limits(lower: np.ndarray, upper: np.ndarray, margin_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """``[lower + margin, upper - margin]``, collapsing to the mid-range where a joint is narrower than 2 margins."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    mid = (lower + upper) / 2
    return np.minimum(lower + margin_rad, mid), np.maximum(upper - margin_rad, mid)


@lru_cache(maxsize=4)
def configured_margin_rad(path: str | None = None) -> float:
    """``position_margin_rad`` of the safety monitor's configuration file (``config/safety.yaml`` by default), read by
    the gate's own strict loader: what the launched gate applies."""
    from dexstack.safety.gate import load_safety_config  # lazy: gate.py imports this module

    return float(load_safety_config(path).position_margin_rad)


def description_command_limits(description, margin_rad: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Command limits of every joint of ``description`` (description order); margin from safety.yaml by default."""
    limits = description.limit_arrays()
    margin = configured_margin_rad() if margin_rad is None else margin_rad
    return command_limits(limits["lower"], limits["upper"], margin)
