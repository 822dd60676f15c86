"""Robot profile -> merged description -> pinocchio kinematics, checked against the URDFs and MuJoCo."""

import xml.etree.ElementTree as ET
from dataclasses import replace

import mujoco
import numpy as np
import pytest

from dexstack.paths import resolve_uri
from dexstack.robot import ProfileError, load_description, load_profile
from dexstack.robot.description import _build
from dexstack.robot.kinematics import Kinematics
from dexstack.sim import SimCell


@pytest.fixture(scope="module")
def description():
    return load_description("panda_allegro")


def _urdf_limits(uri: str) -> dict[str, tuple[float, float, float, float]]:
    root = ET.parse(resolve_uri(uri)).getroot()
    out = {}
    for j in root.findall("joint"):
        lim = j.find("limit")
        if j.get("type") == "revolute" and lim is not None:
            out[j.get("name")] = tuple(float(lim.get(k)) for k in ("lower", "upper", "velocity", "effort"))
    return out


def test_joints_and_limits_come_from_the_urdfs(description):
    profile = description.profile
    arm = _urdf_limits(profile.arm.description)
    hand = _urdf_limits(profile.hand.description)
    # the finger joints are not on the chain
    assert description.arm_joints == tuple(n for n in arm if n.startswith("panda_joint"))
    assert description.hand_joints == tuple(hand)
    for name, (lo, hi, vel, eff) in {**arm, **hand}.items():
        if name in description.limits:
            lim = description.limits[name]
            assert (lim.lower, lim.upper, lim.velocity, lim.effort) == (lo, hi, vel, eff)


def test_merged_description_drops_the_panda_gripper_and_mounts_the_hand(description):
    root = ET.fromstring(description.urdf_xml)
    links = {link.get("name") for link in root.findall("link")}
    assert "panda_hand" not in links and "panda_leftfinger" not in links
    mount = [j for j in root.findall("joint") if j.find("child").get("link") == "palm_link"]
    assert len(mount) == 1 and mount[0].find("parent").get("link") == "panda_link8"


def test_home_is_clipped_into_limits(description):
    home = dict(zip(description.joints, description.home()))
    assert home["panda_joint4"] == pytest.approx(-2.356)
    assert home["joint_12.0"] == pytest.approx(description.limits["joint_12.0"].lower)  # 0 is below its range


def test_limits_override_tightens_and_refuses_to_widen():
    profile = load_profile("panda_allegro")
    tight = _build(replace(profile, limits_override={"panda_joint1": {"upper": 1.0, "velocity": 1.0}}))
    assert tight.limits["panda_joint1"].upper == 1.0 and tight.limits["panda_joint1"].velocity == 1.0
    with pytest.raises(ProfileError, match="widens"):
        _build(replace(profile, limits_override={"panda_joint1": {"upper": 5.0}}))
    with pytest.raises(ProfileError, match="not in the description"):
        _build(replace(profile, limits_override={"no_such_joint": {"upper": 0.0}}))


def test_unknown_profile_and_bad_links_are_reported():
    with pytest.raises(ProfileError, match="known profiles are .*panda_allegro"):
        load_profile("no_such_robot")
    profile = load_profile("panda_allegro")
    with pytest.raises(ProfileError, match="not below"):
        _build(replace(profile, arm=replace(profile.arm, flange_link="palm_link")))
    with pytest.raises(ProfileError, match="not in the hand description"):
        _build(replace(profile, hand=replace(profile.hand, fingertip_links=("nope",))))


def test_pinocchio_fk_matches_mujoco_body_poses(description):
    """One description, two engines: link poses agree at random configurations."""
    kin = Kinematics(description)
    cell = SimCell(with_camera=False)
    rng = np.random.default_rng(0)
    lim = description.limit_arrays()
    for _ in range(5):
        q = rng.uniform(lim["lower"], lim["upper"])
        cell.reset(q)
        kin.update(q)
        for link in ("panda_link7", "palm_link", *description.profile.hand.fingertip_links):
            T = kin.pose(link)
            body = cell.model.body(link)
            np.testing.assert_allclose(cell.data.xpos[body.id], T[:3, 3], atol=1e-6)
            np.testing.assert_allclose(cell.data.xmat[body.id].reshape(3, 3), T[:3, :3], atol=1e-6)


def test_frame_jacobian_matches_finite_differences(description):
    kin = Kinematics(description)
    q = description.home()
    J = kin.frame_jacobian(q, "link_3.0_tip")
    eps = 1e-6
    for i in (0, 3, 8):
        dq = np.zeros_like(q)
        dq[i] = eps
        dp = (kin.frame_pose(q + dq, "link_3.0_tip")[:3, 3] - kin.frame_pose(q - dq, "link_3.0_tip")[:3, 3]) / (2 * eps)
        np.testing.assert_allclose(J[:3, i], dp, atol=1e-6)
    assert np.allclose(J[:, 11:], 0.0)  # joints 7-10 are the index finger; the others do not move its tip


def test_mujoco_urdf_drops_unloadable_meshes(description):
    xml = description.mujoco_urdf_xml()
    assert ".dae" not in xml and ".stl" in xml.lower()
    mujoco.MjSpec.from_string(xml).compile()
