"""The robot description: arm URDF + hand URDF merged at the mount, with joint names and limits read from it.

``RobotDescription`` is the one place joint names, order and limits come from. The merged URDF feeds both
pinocchio (kinematics, safety) and MuJoCo (the simulated cell), so they can never disagree.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dexstack.paths import resolve_uri
from dexstack.robot.profile import ProfileError, RobotProfile, load_profile

ACTUATED_TYPES = {"revolute", "prismatic"}
# Mesh formats MuJoCo can load; visuals in other formats (e.g. Collada .dae) are dropped from the sim model.
MUJOCO_MESH_SUFFIXES = {".stl", ".obj", ".msh"}


@dataclass(frozen=True)
class JointLimits:
    lower: float  # rad (or m for prismatic)
    upper: float
    velocity: float  # rad/s
    effort: float  # N m

    def clip(self, value: float) -> float:
        return min(max(value, self.lower), self.upper)


@dataclass(frozen=True)
class RobotDescription:
    profile: RobotProfile
    urdf_xml: str  # merged arm + hand; mesh URIs resolved to absolute paths
    arm_joints: tuple[str, ...]
    hand_joints: tuple[str, ...]
    limits: dict[str, JointLimits]

    @property
    def joints(self) -> tuple[str, ...]:
        """All actuated joints: arm first, then hand (the order of /joint_states from our drivers)."""
        return self.arm_joints + self.hand_joints

    @property
    def base_frame(self) -> str:
        return self.profile.arm.base_link

    def limit_arrays(self, joints: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """``lower``, ``upper``, ``velocity``, ``effort`` arrays in the order of ``joints`` (default: all)."""
        names = self.joints if joints is None else joints
        rows = [self.limits[n] for n in names]
        return {
            "lower": np.array([r.lower for r in rows]),
            "upper": np.array([r.upper for r in rows]),
            "velocity": np.array([r.velocity for r in rows]),
            "effort": np.array([r.effort for r in rows]),
        }

    def home(self, joints: tuple[str, ...] | None = None) -> np.ndarray:
        """The profile's home configuration (rad), unnamed joints at 0, clipped into limits."""
        names = self.joints if joints is None else joints
        return np.array([self.limits[n].clip(self.profile.home_rad.get(n, 0.0)) for n in names])

    def link_tree(self) -> list[tuple[str, str]]:
        """(parent_link, child_link) for every joint of the merged description, in description order."""
        root = ET.fromstring(self.urdf_xml)
        return [(j.find("parent").get("link"), j.find("child").get("link")) for j in root.findall("joint")]

    def mujoco_urdf_xml(self) -> str:
        """The merged URDF prepared for MuJoCo's URDF importer (keeps link bodies, drops unsupported meshes)."""
        root = ET.fromstring(self.urdf_xml)
        for link in root.findall("link"):
            for visual in link.findall("visual"):
                mesh = visual.find("geometry/mesh")
                if mesh is not None and Path(mesh.get("filename", "")).suffix.lower() not in MUJOCO_MESH_SUFFIXES:
                    link.remove(visual)
        mj = ET.Element("mujoco")
        ET.SubElement(mj, "compiler", strippath="false", fusestatic="false", balanceinertia="true",
                      discardvisual="false", angle="radian")
        root.insert(0, mj)
        return ET.tostring(root, encoding="unicode")


def load_description(profile: RobotProfile | str) -> RobotDescription:
    """Build the description of a profile (name, YAML path, or a loaded :class:`RobotProfile`)."""
    if isinstance(profile, str):
        return _load_cached(profile)
    return _build(profile)


@lru_cache(maxsize=8)
def _load_cached(name_or_path: str) -> RobotDescription:
    return _build(load_profile(name_or_path))


def _read_urdf(uri: str, profile: RobotProfile) -> ET.Element:
    relative_to = profile.source.parent if profile.source else None
    path = resolve_uri(uri, relative_to)
    root = ET.parse(path).getroot()
    if root.tag != "robot":
        raise ProfileError(f"{path} is not a URDF (root element <{root.tag}>)")
    for mesh in root.iter("mesh"):
        filename = mesh.get("filename", "")
        mesh.set("filename", str(resolve_uri(filename, path.parent)))
    return root


def _joint_graph(root: ET.Element) -> dict[str, ET.Element]:
    """child link name -> joint element."""
    return {j.find("child").get("link"): j for j in root.findall("joint")}


def _chain(root: ET.Element, base: str, tip: str) -> tuple[list[str], list[ET.Element]]:
    """Links and joints from ``base`` to ``tip`` (inclusive), walking up from the tip."""
    by_child = _joint_graph(root)
    links, joints, link = [tip], [], tip
    while link != base:
        if link not in by_child:
            raise ProfileError(f"link '{tip}' is not below '{base}' in {root.get('name')}'s URDF")
        joint = by_child[link]
        joints.append(joint)
        link = joint.find("parent").get("link")
        links.append(link)
    return links[::-1], joints[::-1]


def _subtree(root: ET.Element, top: str) -> tuple[list[str], list[ET.Element]]:
    """Links and joints below ``top`` (inclusive), in description (depth-first) order."""
    children: dict[str, list[ET.Element]] = {}
    for joint in root.findall("joint"):
        children.setdefault(joint.find("parent").get("link"), []).append(joint)
    link_names = {link.get("name") for link in root.findall("link")}
    if top not in link_names:
        raise ProfileError(f"link '{top}' does not exist in {root.get('name')}'s URDF")
    links, joints, stack = [], [], [top]
    while stack:
        link = stack.pop()
        links.append(link)
        for joint in reversed(children.get(link, [])):
            joints.append(joint)
            stack.append(joint.find("child").get("link"))
    order = {id(j): i for i, j in enumerate(root.findall("joint"))}
    return links, sorted(joints, key=lambda j: order[id(j)])


def _limits(joint: ET.Element) -> JointLimits:
    limit = joint.find("limit")
    if limit is None:
        raise ProfileError(f"joint '{joint.get('name')}' has no <limit> in its URDF")
    return JointLimits(
        lower=float(limit.get("lower", -math.inf)),
        upper=float(limit.get("upper", math.inf)),
        velocity=float(limit.get("velocity", math.inf)),
        effort=float(limit.get("effort", math.inf)),
    )


def _apply_override(name: str, base: JointLimits, override: dict[str, float]) -> JointLimits:
    unknown = set(override) - {"lower", "upper", "velocity", "effort"}
    if unknown:
        raise ProfileError(f"limits_override.{name}: unknown keys {sorted(unknown)}")
    new = JointLimits(
        lower=override.get("lower", base.lower),
        upper=override.get("upper", base.upper),
        velocity=override.get("velocity", base.velocity),
        effort=override.get("effort", base.effort),
    )
    if new.lower < base.lower or new.upper > base.upper or new.velocity > base.velocity or new.effort > base.effort:
        raise ProfileError(f"limits_override.{name} widens the description's limits {base}: only tightening is allowed")
    if new.lower >= new.upper:
        raise ProfileError(f"limits_override.{name}: lower {new.lower} >= upper {new.upper}")
    return new


def _build(profile: RobotProfile) -> RobotDescription:
    arm_root = _read_urdf(profile.arm.description, profile)
    hand_root = _read_urdf(profile.hand.description, profile)
    arm_links, arm_chain = _chain(arm_root, profile.arm.base_link, profile.arm.flange_link)
    hand_links, hand_tree = _subtree(hand_root, profile.hand.root_link)
    clash = set(arm_links) & set(hand_links)
    if clash:
        raise ProfileError(f"arm and hand descriptions share link names {sorted(clash)}")
    for link in (profile.hand.palm_link, *profile.hand.fingertip_links):
        if link not in hand_links:
            raise ProfileError(f"hand link '{link}' named in the profile is not in the hand description")

    merged = ET.Element("robot", name=profile.name)
    for source, keep_links, keep_joints in ((arm_root, arm_links, arm_chain), (hand_root, hand_links, hand_tree)):
        for material in source.findall("material"):
            merged.append(material)
        keep = set(keep_links)
        for link in source.findall("link"):
            if link.get("name") in keep:
                merged.append(link)
        for joint in keep_joints:
            merged.append(joint)
    mount = ET.SubElement(merged, "joint", name=f"{profile.hand.root_link}_mount", type="fixed")
    ET.SubElement(mount, "parent", link=profile.arm.flange_link)
    ET.SubElement(mount, "child", link=profile.hand.root_link)
    ET.SubElement(mount, "origin", xyz=" ".join(map(repr, profile.hand.mount_xyz_m)),
                  rpy=" ".join(map(repr, profile.hand.mount_rpy_rad)))

    arm_joints = tuple(j.get("name") for j in arm_chain if j.get("type") in ACTUATED_TYPES)
    hand_joints = tuple(j.get("name") for j in hand_tree if j.get("type") in ACTUATED_TYPES)
    for joint in (*arm_chain, *hand_tree):
        if joint.get("type") == "continuous":
            raise ProfileError(f"joint '{joint.get('name')}' is continuous: give it limits in the URDF")
    limits = {j.get("name"): _limits(j) for j in (*arm_chain, *hand_tree) if j.get("type") in ACTUATED_TYPES}
    unknown = set(profile.limits_override) - set(limits)
    if unknown:
        raise ProfileError(f"limits_override names joints not in the description: {sorted(unknown)}")
    for name, override in profile.limits_override.items():
        limits[name] = _apply_override(name, limits[name], override)
    unknown_home = set(profile.home_rad) - set(limits)
    if unknown_home:
        raise ProfileError(f"home_rad names joints not in the description: {sorted(unknown_home)}")
    return RobotDescription(
        profile=profile,
        urdf_xml=ET.tostring(merged, encoding="unicode"),
        arm_joints=arm_joints,
        hand_joints=hand_joints,
        limits=limits,
    )
