"""The deployed-evaluation graph: the ground-truth mode feeds the policy the simulator's pose by a remap (the
policy then ignores perception's covariance twins, which never match those poses: tests/integration/
test_policy_object_pose.py)."""

from dexstack.evaluation.deployed import DeployedOptions, graph_description
from dexstack.nodes import policy as policy_node


def _policy(options: DeployedOptions):
    (node,) = [n for n in graph_description("track_cube", "lift", options).nodes if n.executable == "policy"]
    return node


def test_ground_truth_mode_remaps_the_policy_pose_to_the_simulator():
    remaps = dict(_policy(DeployedOptions(gt_object_pose=True)).remaps)
    assert remaps == {"/" + policy_node.OBJECT_POSE_TOPIC: "/dexstack/sim/object_pose_gt"}


def test_perception_mode_leaves_the_policy_on_perception():
    assert _policy(DeployedOptions()).remaps == []
