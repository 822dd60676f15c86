"""Retargeting config: every shipped YAML (``config/retarget/*.yaml``) loads for every method on the robot it is made
for, and bad configs fail with a clear ValueError."""

import copy

import numpy as np
import pytest
import yaml

from dexstack.retarget import HandRetargeter, load_retarget_config
from dexstack.retarget.config import METHODS, config_path, parse_retarget_config, retarget_config_for
from dexstack.robot import load_description
from tests.profiles import PROFILES, RETARGET_CONFIGS


@pytest.fixture(scope="module", params=RETARGET_CONFIGS)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def raw(name):
    with config_path(name).open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def description(raw):
    return load_description(raw["robot_profile"])


@pytest.mark.parametrize("method", METHODS)
def test_shipped_config_builds_a_retargeter_for_every_method(name, description, method):
    config = load_retarget_config(name, method)
    assert config.method == method
    r = HandRetargeter(config, description)
    assert r.joint_names == description.hand_joints  # joint names come from the description, not the config
    assert r.n_terms > 0
    # the human frame's axes are a proper rotation
    R = np.asarray(config.human_frame.R_parent_frame)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)


def test_default_method_and_file_lookup(name, raw, tmp_path):
    assert load_retarget_config(name).method == raw["default_method"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_retarget_config(str(path), "position").source == path.resolve()
    with pytest.raises(FileNotFoundError, match=name):  # lists the known configs
        load_retarget_config("no_such_hand")


def _mutated(raw, edit):
    r = copy.deepcopy(raw)
    edit(r)
    return r


BAD = {
    "index above 20": (lambda r: r["methods"]["vector"]["vectors"][0].update(human=[0, 21]), "vector",
                       "out of range 0..20"),
    "negative index": (lambda r: r["methods"]["position"]["points"][0].update(human=-1), "position",
                       "out of range 0..20"),
    "non-integer index": (lambda r: r["methods"]["position"]["points"][0].update(human=2.5), "position",
                          "must be an integer"),
    "unknown method": (lambda r: None, "kinematic", "unknown retargeting method 'kinematic'"),
    "method not configured": (lambda r: r["methods"].pop("dexpilot"), "dexpilot", "not configured"),
    "type mismatch": (lambda r: r["methods"]["vector"].update(type="position"), "vector", "does not match"),
    "zero scaling": (lambda r: r.update(scaling=0.0), "vector", "scaling=0.0 is out of range"),
    "alpha above 1": (lambda r: r.update(low_pass_alpha=1.5), "vector", "low_pass_alpha=1.5 is out of range"),
    "negative reg": (lambda r: r.update(reg_weight=-1.0), "vector", "reg_weight"),
    "solver iterations": (lambda r: r["solver"].update(max_iterations=0), "vector", "max_iterations"),
    "axes not orthonormal": (lambda r: r["human_frame"]["axes"].update(y=[0, 1, 0]), "vector", "orthonormal"),
    "axes and rpy": (lambda r: r["human_frame"].update(rpy_rad=[0, 0, 0]), "vector", "exactly one of"),
    "vector pair": (lambda r: r["methods"]["vector"]["vectors"][0].update(human=[0]), "vector",
                    "origin_index, task_index"),
    "empty vectors": (lambda r: r["methods"]["vector"].update(vectors=[]), "vector", "non-empty list"),
    "escape below project": (lambda r: r["methods"]["dexpilot"].update(escape_dist_m=0.01), "dexpilot",
                             "escape_dist_m"),
    "one fingertip": (lambda r: r["methods"]["dexpilot"].update(fingertips=r["methods"]["dexpilot"]["fingertips"][:1]),
                      "dexpilot", "2 to 5 fingertips"),
    "keypoint_links length": (lambda r: r.update(keypoint_links=["wrist"]), "vector", "21 link names"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_rejected_with_the_reason(raw, case):
    edit, method, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        parse_retarget_config(_mutated(raw, edit), method)


def test_unknown_link_is_rejected_when_the_retargeter_is_built(raw, description):
    config = parse_retarget_config(
        _mutated(raw, lambda r: r["methods"]["vector"]["vectors"][1].update(task="link_3.0_tipp")), "vector")
    with pytest.raises(ValueError, match=r"unknown robot link\(s\) \['link_3.0_tipp'\]"):
        HandRetargeter(config, description)


def test_human_frame_on_a_moving_link_is_rejected(raw, description):
    config = parse_retarget_config(_mutated(raw, lambda r: r["human_frame"].update(parent_link="link_2.0")), "vector")
    with pytest.raises(ValueError, match="moves with the hand joints"):
        HandRetargeter(config, description)


def test_a_term_whose_task_link_cannot_move_is_rejected(raw, description):
    config = parse_retarget_config(
        _mutated(raw, lambda r: r["methods"]["position"]["points"][0].update(link="palm_link")), "position")
    with pytest.raises(ValueError, match="does not move"):
        HandRetargeter(config, description)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_profile_has_exactly_one_retargeting_config(profile):
    name = retarget_config_for(profile)  # what teleop uses by default: made for the profile, or for its hand
    made_for = load_description(load_retarget_config(name).robot_profile).profile
    assert made_for.name == profile or (made_for.hand_description_path()
                                        == load_description(profile).profile.hand_description_path())
    HandRetargeter.from_file("", None, load_description(profile))


def test_hand_side_is_checked(raw):
    assert parse_retarget_config(raw, "vector").hand_side == raw.get("hand_side", "right")
    with pytest.raises(ValueError, match=r"hand_side: expected one of \['right', 'left'\], got 'both'"):
        parse_retarget_config(_mutated(raw, lambda r: r.update(hand_side="both")), "vector")


def test_a_config_made_for_another_hand_is_refused(name):
    """Left and right Allegro share every link name: without the check a right-hand config would run mirrored."""
    mine = load_retarget_config(name).robot_profile
    for profile in PROFILES:
        other = load_description(profile)
        if other.profile.hand.description == load_description(mine).profile.hand.description:
            HandRetargeter.from_file(name, None, other)  # the same hand on another arm is fine
        else:
            with pytest.raises(ValueError, match=f"made for the hand of robot profile '{mine}'"):
                HandRetargeter.from_file(name, None, other)
