"""Process environment for ROS 2 on the simulated cell and in tests. Import-safe: never imports rclpy.

The network rule: every sim/test/benchmark entry point calls :func:`force_localhost_dds` *before* rclpy is
imported or a node process is spawned, so DDS discovery never leaves loopback. On a real robot workstation the
user chooses the discovery range; only the sim and test entry points force it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from dexstack.paths import data_path

LOCALHOST = "LOCALHOST"


def fastdds_profile_path() -> str:
    """Fast DDS profile with a 16 MiB shared-memory segment (the 512 KiB default drops ~40% of RGB-D frames)."""
    return str(data_path("config", "fastdds_shm_localhost.xml"))


def force_localhost_dds(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set localhost-only discovery and the shared-memory Fast DDS profile in ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = LOCALHOST
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile_path())
    return env


def assert_localhost_dds(env: MutableMapping[str, str] | None = None) -> None:
    """Raise if the environment would let DDS discovery leave this machine."""
    env = os.environ if env is None else env
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != LOCALHOST:
        raise RuntimeError("ROS_AUTOMATIC_DISCOVERY_RANGE must be LOCALHOST for the sim cell and tests")
