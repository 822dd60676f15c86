"""Self-collision and robot-vs-table checks of a joint setpoint, with coal through pinocchio's GeometryModel.

Geometry is built from the robot description alone, so any profile gets it: every joint carries one capsule per
child (a segment from the joint's origin to each child joint / body frame, e.g. a finger link to its tip), arm
segments with ``arm_link_radius_m``, hand segments (and the wrist-to-palm/finger-base segments) with
``hand_link_radius_m``; the fixed base gets one too. A skeleton of capsules is conservative where links are thin and
approximate where they are bulky: it is a guard against gross self-collision and table strikes, not a contact model.

Pairs checked: arm links two or more joints apart, hand links against the arm up to the forearm, and every moving
link against the table. Pairs that touch at the home pose (the skeleton overlapping at a joint) are left out, as an
SRDF's "adjacent/default" entries are. Fingers against each other are not checked (grasps bring them into contact).

**The table** is the half-space below ``table_top_z_m`` (base frame), not a box around the palm and fingertips: each
link's geometry must stay above ``table_top_z_m - table_penetration_m``. A setpoint that presses a fingertip onto the
table (as a push does) lies *below* the surface, so a penetration of the setpoint is allowed, per kind of link:

- links moved by the arm (arm links, the palm and the finger bases on the flange): ``table_penetration_m``, small:
  the arm's servos are stiff, a setpoint below the surface is a large force;
- finger links (moved by a hand joint): ``finger_table_penetration_m``. A position-servoed finger whose setpoint lies
  below the surface stops on it and presses with (servo stiffness x depth), bounded by the finger's effort limit:
  contact, not penetration. Measured in the MuJoCo cell on the shipped push (``track_cube``, no gate): fingertip
  setpoints 23 mm below the top while MuJoCo reported the tip touching the table (<= 2.5 mm contact depth), the
  cube pushed; the fingertip capsule (12 mm) matches the cell's fingertip sphere (12 mm), so the capsule model and
  the physics agree on where contact starts.
:meth:`CollisionModel.table_clearance_m` is the pure function a training env uses to see the same limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import coal
import numpy as np
import pinocchio as pin

from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics


@dataclass(frozen=True)
class CollisionConfig:
    table_top_z_m: float = 0.0  # table surface height in the robot base frame
    table_penetration_m: float = 0.015  # how far below the surface a setpoint's arm/palm geometry may go
    finger_table_penetration_m: float = 0.03  # ... and its finger links' (a finger pressing on the table)
    arm_link_radius_m: float = 0.055
    hand_link_radius_m: float = 0.012

    def errors(self) -> list[str]:
        out = []
        if not 0.0 <= self.table_penetration_m <= 0.1:
            out.append("table_penetration_m must be in [0, 0.1]")
        if not 0.0 <= self.finger_table_penetration_m <= 0.05:
            out.append("finger_table_penetration_m must be in [0, 0.05]")
        if not 0.0 < self.arm_link_radius_m <= 0.3 or not 0.0 < self.hand_link_radius_m <= 0.1:
            out.append("arm_link_radius_m must be in (0, 0.3] and hand_link_radius_m in (0, 0.1]")
        return out


@dataclass(frozen=True)
class _Segment:
    joint: int  # pinocchio joint the capsule moves with (0: the fixed base)
    start: np.ndarray  # in the joint frame
    end: np.ndarray
    radius: float
    hand: bool
    name: str
    finger: bool = False  # moved by a hand joint (a finger link): may press on the table deeper


def _capsule_placement(start: np.ndarray, end: np.ndarray) -> tuple[pin.SE3, float]:
    """coal's capsule lies along its local z, centred: rotate z onto the segment, place at the midpoint."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    rotation = np.eye(3)
    if length > 1e-9:
        z = axis / length
        helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        rotation = np.column_stack([x, np.cross(z, x), z])
    return pin.SE3(rotation, (start + end) / 2), length


class CollisionModel:
    """Capsule skeleton of a robot description + the table half-space; checks a joint vector (description order)."""

    def __init__(self, description: RobotDescription, config: CollisionConfig | None = None):
        self.config = config or CollisionConfig()
        problems = self.config.errors()
        if problems:
            raise ValueError("invalid collision configuration: " + "; ".join(problems))
        self.kinematics = Kinematics(description)
        self.model, self.data = self.kinematics.model, self.kinematics.data
        self.segments = self._segments(description)
        self.geometry = pin.GeometryModel()
        for s in self.segments:
            placement, length = _capsule_placement(s.start, s.end)
            self.geometry.addGeometryObject(pin.GeometryObject(
                s.name, s.joint, placement, coal.Capsule(s.radius, length)))
        up = np.array([0.0, 0.0, 1.0])
        floor = self.config.table_top_z_m - self.config.table_penetration_m
        self.table_id = self.geometry.addGeometryObject(pin.GeometryObject(
            "table", 0, pin.SE3.Identity(), coal.Halfspace(up, floor)))
        finger_floor = self.config.table_top_z_m - self.config.finger_table_penetration_m
        self.finger_table_id = self.geometry.addGeometryObject(pin.GeometryObject(
            "table (fingers)", 0, pin.SE3.Identity(), coal.Halfspace(up, finger_floor)))
        self.pair_names: list[str] = []
        self._pairs(description)
        self.geometry_data = pin.GeometryData(self.geometry)
        for request in self.geometry_data.collisionRequests:
            request.enable_contact = True
            request.num_max_contacts = 1
        # Only the setpoint's own (moving) geometry: joint index > 0.
        self._moving = [k for k, s in enumerate(self.segments) if s.joint > 0]
        self._starts = np.array([self.segments[k].start for k in self._moving])
        self._ends = np.array([self.segments[k].end for k in self._moving])
        self._radii = np.array([self.segments[k].radius for k in self._moving])
        self._joints = [self.segments[k].joint for k in self._moving]
        self._floors = np.array([finger_floor if self.segments[k].finger else floor for k in self._moving])
        self._above_first = np.array([j >= 2 for j in self._joints])  # as the table pairs: joint 1 stands on it

    # ------------------------------------------------------------------ geometry from the description
    def _segments(self, d: RobotDescription) -> list[_Segment]:
        m = self.model
        hand_joints = {m.getJointId(n) for n in d.hand_joints}
        hand_root = d.profile.hand.root_link
        out = []
        for j in range(m.njoints):
            points: list[tuple[np.ndarray, bool, str]] = []
            for child in range(1, m.njoints):
                if m.parents[child] == j:
                    points.append((m.jointPlacements[child].translation.copy(), child in hand_joints, m.names[child]))
            for frame in m.frames:
                if frame.parentJoint == j and frame.type == pin.FrameType.BODY:
                    p = frame.placement.translation.copy()
                    if np.linalg.norm(p) > 1e-6 and not any(np.allclose(p, q) for q, _, _ in points):
                        points.append((p, j in hand_joints or frame.name == hand_root, frame.name))
            for p, to_hand, target in points:
                hand = j in hand_joints or to_hand
                radius = self.config.hand_link_radius_m if hand else self.config.arm_link_radius_m
                out.append(_Segment(j, np.zeros(3), p, radius, hand, f"{m.names[j]}->{target}",
                                    finger=j in hand_joints))
        return out

    def _pairs(self, d: RobotDescription) -> None:
        n_arm = len(d.arm_joints)  # pinocchio joints 1..n_arm are the arm (a serial chain from the base)
        candidates = []
        for a, sa in enumerate(self.segments):
            for b in range(a + 1, len(self.segments)):
                sb = self.segments[b]
                if sa.hand and sb.hand:
                    continue  # fingers against each other and the palm: not checked
                if sa.hand or sb.hand:
                    arm = sb if sa.hand else sa
                    if arm.joint <= n_arm - 2:  # hand vs base / upper arm / forearm
                        candidates.append((a, b))
                elif abs(sa.joint - sb.joint) >= 2:
                    candidates.append((a, b))
        for a, b in candidates:
            self.geometry.addCollisionPair(pin.CollisionPair(a, b))
        for k, s in enumerate(self.segments):
            if s.joint >= 2:  # the base and the first (vertical-axis) joint stand on the table
                table = self.finger_table_id if s.finger else self.table_id
                self.geometry.addCollisionPair(pin.CollisionPair(k, table))
        # Leave out what touches already at home: the skeleton overlapping where links meet.
        data = pin.GeometryData(self.geometry)
        pin.computeCollisions(self.model, self.data, self.geometry, data, self.kinematics._q(d.home()), False)
        home = [k for k, r in enumerate(data.collisionResults) if r.isCollision()]
        for k in reversed(home):
            pair = self.geometry.collisionPairs[k]
            if {self.table_id, self.finger_table_id} & {pair.first, pair.second}:
                name = self.geometry.geometryObjects[pair.first].name
                raise ValueError(f"the robot's home pose is in the table: {name}")
            self.geometry.removeCollisionPair(pair)
        self.pair_names = [f"{self.geometry.geometryObjects[p.first].name} vs "
                           f"{self.geometry.geometryObjects[p.second].name}" for p in self.geometry.collisionPairs]

    # ------------------------------------------------------------------ checks
    def collisions(self, q_rad: np.ndarray) -> list[tuple[str, float]]:
        """Colliding pairs at ``q_rad`` and their penetration depth (m); empty: collision-free."""
        if not pin.computeCollisions(self.model, self.data, self.geometry, self.geometry_data,
                                     self.kinematics._q(q_rad), False):
            return []
        out = []
        for k, result in enumerate(self.geometry_data.collisionResults):
            if result.isCollision():
                depth = abs(result.getContact(0).penetration_depth) if result.numContacts() else 0.0
                out.append((self.pair_names[k], max(depth, 1e-9)))
        return out

    def violation_m(self, q_rad: np.ndarray) -> float:
        """Summed penetration depth of every colliding pair (0: collision-free)."""
        return float(sum(depth for _, depth in self.collisions(q_rad)))

    def colliding_pair_indices(self, q_rad: np.ndarray) -> list[int]:
        if not pin.computeCollisions(self.model, self.data, self.geometry, self.geometry_data,
                                     self.kinematics._q(q_rad), False):
            return []  # the common case, decided in C++
        return [k for k, r in enumerate(self.geometry_data.collisionResults) if r.isCollision()]

    def pairs_violation_m(self, q_rad: np.ndarray, pairs: list[int]) -> float:
        """Summed penetration of only the pairs ``pairs`` (indices): cheap re-checks along a short step."""
        pin.updateGeometryPlacements(self.model, self.data, self.geometry, self.geometry_data,
                                     self.kinematics._q(q_rad))
        total = 0.0
        for k in pairs:
            if pin.computeCollision(self.geometry, self.geometry_data, k):
                result = self.geometry_data.collisionResults[k]
                depth = abs(result.getContact(0).penetration_depth) if result.numContacts() else 0.0
                total += max(depth, 1e-9)
        return total

    def capsules_base(self, q_rad: np.ndarray, hand_only: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The moving capsules at ``q_rad`` in the base frame: (starts (K, 3), ends (K, 3), radii (K,)); with
        ``hand_only`` the hand's (palm, finger bases, finger links). Perception uses them to tell the robot's own
        depth points from the object's."""
        pin.forwardKinematics(self.model, self.data, self.kinematics._q(q_rad))
        ks = [i for i, k in enumerate(self._moving) if not hand_only or self.segments[k].hand]
        starts = np.array([self.data.oMi[self._joints[i]].act(self._starts[i]) for i in ks]).reshape(-1, 3)
        ends = np.array([self.data.oMi[self._joints[i]].act(self._ends[i]) for i in ks]).reshape(-1, 3)
        return starts, ends, self._radii[ks].copy()

    def table_clearance_m(self, q_rad: np.ndarray) -> float:
        """Signed distance (m) of the moving geometry closest to its table limit (``table_top_z_m -
        table_penetration_m``, finger links ``table_top_z_m - finger_table_penetration_m``; >= 0: allowed). Pure and
        cheap (FK + capsule end points): for training envs."""
        pin.forwardKinematics(self.model, self.data, self.kinematics._q(q_rad))
        # z of a point p in joint j's frame = (R_j p + t_j)_z = R_j[2] . p + t_j[2]; only moving links above joint 1.
        rz = np.array([self.data.oMi[j].rotation[2] for j in self._joints])
        tz = np.array([self.data.oMi[j].translation[2] for j in self._joints])
        z0 = np.einsum("ij,ij->i", rz, self._starts) + tz
        z1 = np.einsum("ij,ij->i", rz, self._ends) + tz
        clearance = np.minimum(z0, z1) - self._radii - self._floors
        return float(np.min(clearance[self._above_first]))
