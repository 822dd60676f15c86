"""The deployed-evaluation graph: the ground-truth mode feeds the policy the simulator's pose and nothing of
perception's (a covariance twin from perception would hold every ground-truth pose back: the policy waits for a
pose's twin once a source has sent twins)."""

from dexstack.evaluation.deployed import DeployedOptions, graph_description
from dexstack.nodes import policy as policy_node


def _policy(options: DeployedOptions):
    (node,) = [n for n in graph_description("track_cube", "lift", options).nodes if n.executable == "policy"]
    return node


def test_ground_truth_mode_remaps_the_pose_and_its_covariance_away_from_perception():
    remaps = dict(_policy(DeployedOptions(gt_object_pose=True)).remaps)
    assert remaps["/" + policy_node.OBJECT_POSE_TOPIC] == "/dexstack/sim/object_pose_gt"
    twin_source = "/" + policy_node.OBJECT_POSE_COV_TOPIC
    assert remaps[twin_source] not in (twin_source, "/dexstack/sim/object_pose_gt")


def test_perception_mode_leaves_the_policy_on_perception():
    assert _policy(DeployedOptions()).remaps == []
