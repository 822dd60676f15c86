"""Hand-only pinocchio model for retargeting: positions and Jacobians of points in the hand root frame.

The model is built from the *hand subtree of the merged robot description* (``description.urdf_xml`` below
``profile.hand.root_link``), so joint names, axes and link frames are exactly those of the robot the stack drives;
joint limits come from ``description.limits`` (which include the profile's ``limits_override``).

Why a hand-only model rather than ``pin.buildReducedModel`` of the merged arm+hand model with the arm locked:
both have the same 16 joints, so FK/Jacobian cost is the same, but with the hand root as pinocchio's world frame
every position and Jacobian comes out directly in the hand root frame (``palm_link`` for the default profile),
independent of the arm configuration: no per-call transform of targets, and nothing to refresh when the arm moves.

Extra frames (e.g. the robot's analogue of the human wrist) are added as fixed links of the URDF, so the same XML
(:func:`hand_urdf_xml`) can be handed to other tools (the benchmark gives it to dex-retargeting).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from dexstack.robot.description import ACTUATED_TYPES, RobotDescription

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameSpec:
    """A frame rigidly attached to a robot link: ``T_parent_frame`` from ``xyz_m`` (m) and ``R_parent_frame``."""

    name: str
    parent_link: str
    xyz_m: tuple[float, float, float]
    R_parent_frame: tuple[tuple[float, float, float], ...]  # 3x3 rotation, rows

    @property
    def T_parent_frame(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = np.asarray(self.R_parent_frame, dtype=float)
        T[:3, 3] = self.xyz_m
        return T


def hand_urdf_xml(description: RobotDescription, extra_frames: Sequence[FrameSpec] = ()) -> str:
    """URDF of the hand alone: the merged description's links and joints below ``profile.hand.root_link``.

    ``extra_frames`` become massless links on fixed joints. Mesh paths are the description's (absolute).
    """
    root = ET.fromstring(description.urdf_xml)
    top = description.profile.hand.root_link
    children: dict[str, list[ET.Element]] = {}
    for joint in root.findall("joint"):
        children.setdefault(joint.find("parent").get("link"), []).append(joint)
    keep_links, keep_joints, stack = set(), set(), [top]
    while stack:
        link = stack.pop()
        keep_links.add(link)
        for joint in children.get(link, []):
            keep_joints.add(id(joint))
            stack.append(joint.find("child").get("link"))
    hand = ET.Element("robot", name=f"{description.profile.name}_hand")
    for material in root.findall("material"):
        hand.append(material)
    for link in root.findall("link"):
        if link.get("name") in keep_links:
            hand.append(link)
    for joint in root.findall("joint"):
        if id(joint) in keep_joints:
            hand.append(joint)
    for frame in extra_frames:
        if frame.name in keep_links:
            raise ValueError(f"extra frame '{frame.name}' clashes with a link of the hand description")
        if frame.parent_link not in keep_links:
            raise ValueError(
                f"extra frame '{frame.name}': parent link '{frame.parent_link}' is not in the hand "
                f"(links below '{top}': {sorted(keep_links)})"
            )
        ET.SubElement(hand, "link", name=frame.name)
        joint = ET.SubElement(hand, "joint", name=f"{frame.name}_fixed", type="fixed")
        ET.SubElement(joint, "parent", link=frame.parent_link)
        ET.SubElement(joint, "child", link=frame.name)
        rpy = pin.rpy.matrixToRpy(np.asarray(frame.R_parent_frame, dtype=float))
        ET.SubElement(joint, "origin", xyz=" ".join(map(repr, map(float, frame.xyz_m))),
                      rpy=" ".join(map(repr, map(float, rpy))))
    return ET.tostring(hand, encoding="unicode")


class HandModel:
    """Pinocchio model of the hand; pinocchio's world frame is the hand root link (``palm_link``).

    Joint vectors at the public API are in ``description.hand_joints`` order (rad). Internally (solvers) the
    pinocchio order is used; :meth:`to_pin` / :meth:`from_pin` convert.
    """

    def __init__(self, description: RobotDescription, extra_frames: Sequence[FrameSpec] = ()):
        self.description = description
        self.root_link = description.profile.hand.root_link
        self.model = pin.buildModelFromXML(hand_urdf_xml(description, extra_frames))
        self.data = self.model.createData()
        self.joint_names: tuple[str, ...] = description.hand_joints
        n = len(self.joint_names)
        if self.model.nq != n or self.model.nv != n:
            raise ValueError(
                f"hand model has nq={self.model.nq}, nv={self.model.nv}; retargeting supports 1-DoF "
                f"{sorted(ACTUATED_TYPES)} hand joints only ({n} in the description)"
            )
        # pin_index[i] = pinocchio q index of description joint i
        self.pin_index = np.array([self.model.idx_qs[self.model.getJointId(j)] for j in self.joint_names])
        self.desc_index = np.argsort(self.pin_index)  # q_desc[desc_index] -> pinocchio order
        limits = description.limit_arrays(self.joint_names)
        self.lower_rad = limits["lower"]  # description order
        self.upper_rad = limits["upper"]
        self.lower_pin = self.to_pin(self.lower_rad)
        self.upper_pin = self.to_pin(self.upper_rad)
        self.link_names = tuple(f.name for f in self.model.frames if f.type == pin.FrameType.BODY)
        log.debug("hand model: %d joints, %d links, root '%s'", n, len(self.link_names), self.root_link)

    @property
    def n(self) -> int:
        return len(self.joint_names)

    def to_pin(self, q_rad: np.ndarray) -> np.ndarray:
        out = np.empty(self.n)
        out[self.pin_index] = q_rad
        return out

    def from_pin(self, q_pin: np.ndarray) -> np.ndarray:
        return np.asarray(q_pin)[self.pin_index]

    def frame_id(self, link: str) -> int:
        """Frame id of a link (or extra frame); ``ValueError`` listing the known links otherwise."""
        if link not in self.link_names:
            raise ValueError(f"unknown link '{link}': the hand has {list(self.link_names)}")
        return self.model.getFrameId(link, pin.FrameType.BODY)

    def is_rigid_to_root(self, link: str) -> bool:
        """True if no joint lies between ``link`` and the root (its pose does not depend on q)."""
        return self.model.frames[self.frame_id(link)].parentJoint == 0

    def link_positions(self, q_rad: np.ndarray, links: Sequence[str]) -> np.ndarray:
        """p_root_link (m), shape (len(links), 3), for joint positions ``q_rad`` in description order."""
        pin.forwardKinematics(self.model, self.data, self.to_pin(np.asarray(q_rad, dtype=float)))
        return np.array([pin.updateFramePlacement(self.model, self.data, self.frame_id(link)).translation
                         for link in links])

    def link_pose(self, q_rad: np.ndarray, link: str) -> np.ndarray:
        """T_root_link (4x4) for ``q_rad`` in description order."""
        pin.forwardKinematics(self.model, self.data, self.to_pin(np.asarray(q_rad, dtype=float)))
        return pin.updateFramePlacement(self.model, self.data, self.frame_id(link)).homogeneous.copy()

    def points_and_jacobians(self, q_pin: np.ndarray, frame_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """p_root_frame (F, 3) in m and d p / d q_pin (F, 3, n) in root axes, columns in pinocchio order.

        Hot path of the solvers: one ``computeJointJacobians`` (FK + all joint Jacobians), then per frame a
        placement update and its analytic Jacobian.
        """
        model, data, lwa = self.model, self.data, pin.LOCAL_WORLD_ALIGNED
        pin.computeJointJacobians(model, data, q_pin)
        update, jacobian = pin.updateFramePlacement, pin.getFrameJacobian
        P = np.array([update(model, data, f).translation for f in frame_ids])
        J = np.array([jacobian(model, data, f, lwa) for f in frame_ids])
        return P, J[:, :3]
