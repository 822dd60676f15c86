"""A held object's kept pose stays usable by the policy node for the keeper's whole attached horizon."""

from __future__ import annotations

import numpy as np

from dexstack.nodes import policy as policy_node
from dexstack.perception.pose_keeper import PoseKeeper, PoseKeeperConfig
from dexstack.transforms import make_transform


def test_a_held_objects_kept_pose_is_not_dropped_by_the_policy_before_the_keeper_gives_it_up():
    """The policy node drops poses whose position std exceeds its ``object_pose_max_std_m``; a palm-attached
    prediction's std must stay under it until ``max_attached_s`` (with 1 cm/s growth it passed 3 cm after ~2 s:
    the launched graph's policy stopped commanding while carrying the cube)."""
    limit_m = policy_node.Params().object_pose_max_std_m
    config = PoseKeeperConfig()
    keeper = PoseKeeper(config)
    palm = make_transform((0.5, 0.0, 0.12), np.eye(3))
    keeper.measured(0.0, make_transform((0.5, 0.0, 0.06), np.eye(3)), np.eye(6) * 1e-6, palm)
    late = keeper.predict(0.99 * config.max_attached_s, palm)
    assert late is not None and late.mode == "attached"
    assert np.sqrt(late.covariance_base[0, 0]) < limit_m
    # a free (velocity) prediction is still dropped early: after 1 s it is no longer trusted
    free = PoseKeeper(config)
    free.measured(0.0, make_transform((0.5, 0.0, 0.025), np.eye(3)), np.eye(6) * 1e-6, None)
    assert np.sqrt(free.predict(1.0, None).covariance_base[0, 0]) > limit_m
