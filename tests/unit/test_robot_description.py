"""Robot profile -> merged description -> pinocchio kinematics, checked against the URDFs and MuJoCo, for every
shipped profile (``config/robots/*.yaml``)."""

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
from tests.profiles import PROFILES, sim_cell_config


@pytest.fixture(scope="module", params=PROFILES)
def description(request):
    return load_description(request.param)


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
    # the revolute joints of the arm URDF, in its order (a gripper's prismatic fingers are not on the chain)
    assert description.arm_joints == tuple(arm)
    assert description.hand_joints == tuple(hand)
    for name, (lo, hi, vel, eff) in {**arm, **hand}.items():
        if name in description.limits:
            lim = description.limits[name]
            assert (lim.lower, lim.upper, lim.velocity, lim.effort) == (lo, hi, vel, eff)


def test_merged_description_keeps_the_arm_chain_and_mounts_the_hand(description):
    profile = description.profile
    root = ET.fromstring(description.urdf_xml)
    links = {link.get("name") for link in root.findall("link")}
    arm_links = {link.get("name") for link in ET.parse(resolve_uri(profile.arm.description)).getroot().iter("link")}
    assert profile.arm.base_link in links and profile.arm.flange_link in links
    # only the chain base -> flange of the arm: no gripper, no links beyond the flange (the Panda's hand, UR's ee_link)
    kept = links & arm_links
    parents = {j.find("child").get("link"): j.find("parent").get("link") for j in root.findall("joint")}
    chain, link = set(), profile.arm.flange_link
    while link != profile.arm.base_link:
        chain.add(link)
        link = parents[link]
    assert kept == chain | {profile.arm.base_link}
    assert len(kept) < len(arm_links)  # something beyond the chain (gripper, world, tool links) was left out
    mount = [j for j in root.findall("joint") if j.find("child").get("link") == profile.hand.root_link]
    assert len(mount) == 1 and mount[0].find("parent").get("link") == profile.arm.flange_link


def test_home_is_the_profiles_clipped_into_limits(description):
    home = dict(zip(description.joints, description.home(), strict=True))
    for name, value in home.items():
        lim = description.limits[name]
        assert value == pytest.approx(min(max(description.profile.home_rad.get(name, 0.0), lim.lower), lim.upper))
    assert set(description.profile.home_rad) <= set(description.arm_joints)  # the shipped homes set arm joints
    assert home["joint_12.0"] == pytest.approx(description.limits["joint_12.0"].lower)  # 0 is below its range


def test_limits_override_tightens_and_refuses_to_widen(description):
    profile = description.profile
    j1 = description.arm_joints[0]
    upper = description.limits[j1].upper
    tight = _build(replace(profile, limits_override={j1: {"upper": upper - 0.5, "velocity": 1.0}}))
    assert tight.limits[j1].upper == upper - 0.5 and tight.limits[j1].velocity == 1.0
    with pytest.raises(ProfileError, match="widens"):
        _build(replace(profile, limits_override={j1: {"upper": upper + 1.0}}))
    with pytest.raises(ProfileError, match="not in the description"):
        _build(replace(profile, limits_override={"no_such_joint": {"upper": 0.0}}))


def test_unknown_profile_and_bad_links_are_reported(description):
    with pytest.raises(ProfileError, match=r"known profiles are \[.*" + ".*".join(PROFILES)):
        load_profile("no_such_robot")
    profile = description.profile
    with pytest.raises(ProfileError, match="not below"):
        _build(replace(profile, arm=replace(profile.arm, flange_link="palm_link")))
    with pytest.raises(ProfileError, match="not in the hand description"):
        _build(replace(profile, hand=replace(profile.hand, fingertip_links=("nope",))))


def test_pinocchio_fk_matches_mujoco_body_poses(description):
    """One description, two engines: link poses agree at random configurations."""
    kin = Kinematics(description)
    cell = SimCell(sim_cell_config(description.profile.name), with_camera=False)
    rng = np.random.default_rng(0)
    lim = description.limit_arrays()
    for _ in range(5):
        q = rng.uniform(lim["lower"], lim["upper"])
        cell.reset(q)
        kin.update(q)
        for link in (description.profile.arm.flange_link, "palm_link", *description.profile.hand.fingertip_links):
            T = kin.pose(link)
            body = cell.model.body(link)
            np.testing.assert_allclose(cell.data.xpos[body.id], T[:3, 3], atol=1e-6)
            np.testing.assert_allclose(cell.data.xmat[body.id].reshape(3, 3), T[:3, :3], atol=1e-6)


def test_frame_jacobian_matches_finite_differences(description):
    kin = Kinematics(description)
    q = description.home()
    n_arm = len(description.arm_joints)
    J = kin.frame_jacobian(q, "link_3.0_tip")
    eps = 1e-6
    for i in (0, 3, n_arm + 1):
        dq = np.zeros_like(q)
        dq[i] = eps
        dp = (kin.frame_pose(q + dq, "link_3.0_tip")[:3, 3] - kin.frame_pose(q - dq, "link_3.0_tip")[:3, 3]) / (2 * eps)
        np.testing.assert_allclose(J[:3, i], dp, atol=1e-6)
    index = [description.joints.index(f"joint_{k}.0") for k in range(4)]  # the index finger: joints 0-3
    others = [k for k in range(n_arm, len(description.joints)) if k not in index]
    assert np.allclose(J[:, others], 0.0) and not np.allclose(J[:, index], 0.0)  # only its own finger moves a tip


def test_mujoco_urdf_drops_unloadable_meshes(description):
    xml = description.mujoco_urdf_xml()
    assert ".dae" not in xml and ".stl" in xml.lower()
    mujoco.MjSpec.from_string(xml).compile()
