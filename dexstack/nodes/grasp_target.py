"""grasp_target: a robot grasp target from one RGB-D frame of a human grasp, on request (FunGrasp, issue 12).

Keeps the latest stamp-paired frame of the camera topics (color, aligned depth, camera_info; realsense-ros names)
and, when ``~/compute`` (std_srvs/Trigger) is called, runs :class:`dexstack.grasp.from_frame.GraspFromFrame` on it
(the ``hand_pose`` and ``object_pose`` cores, then functional retargeting of the human grasp of ``object``).

On success it publishes, latched (transient local, the last target), in the calibration's base frame, stamped with
the frame's stamp:

- ``dexstack/grasp/palm_pose`` and ``dexstack/grasp/pregrasp_pose`` (geometry_msgs/PoseStamped): the hand root link
  (palm) at the grasp and at the pre-grasp;
- ``dexstack/grasp/hand_joints`` (sensor_msgs/JointState): the target hand joints (``position``), in the robot
  profile's hand joint order;
- ``dexstack/grasp/contacts`` (geometry_msgs/PoseArray): the positions of the links that should touch the object;
- ``dexstack/grasp/object_pose`` (geometry_msgs/PoseStamped): the object's pose in the frame the target was made in;
- ``dexstack/grasp/target`` (std_msgs/String): the whole target as JSON (``target_to_dict``: palm pose and joints,
  pre-grasp, links and contact mask in the object frame, ``T_base_object``), the ``policy`` node's grasp input;

and answers success with a one-line summary (contact match, retargeting time). ``compute_on_start`` makes the first
target by itself (from the first frame that gives one, retried about once a second); ``sim_human_grasp`` (the
simulated cell only) takes the human hand from the object's grasp library instead of the detector, held on the
object where the simulator has it (``dexstack/sim/object_pose_gt``: the hand as a perfect detector would see it);
the object's pose still comes from the frame, its frame turned to the one the hand holds it in when the object is
symmetric (placed in the fitted frame as it came, the grasp went to another side of a cube, can, lemon or rod:
docs/grasp.md). ``verify`` checks the retargeting candidates by an open-loop grasp in the simulated grasp
cell and keeps the first that lifts the object (:mod:`dexstack.grasp.verify`; 30-100 s per target measured on 2
cores, the node answers nothing else meanwhile). Any failure (no frame yet, no hand,
no object, a hand not touching it, no non-penetrating solution) answers ``success: false`` with the cause and
publishes nothing, so a consumer keeps the previous target. ``object`` may be changed while running; an unknown
object is refused (the known ones listed) and the old one kept.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Pose, PoseArray, PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dexstack.calibration import load_camera_calibration
from dexstack.nodes import common
from dexstack.nodes.rgbd_input import RgbdInput
from dexstack.transforms import transform_to_pose

TOPICS = {"palm": "dexstack/grasp/palm_pose", "pregrasp": "dexstack/grasp/pregrasp_pose",
          "joints": "dexstack/grasp/hand_joints", "contacts": "dexstack/grasp/contacts",
          "object": "dexstack/grasp/object_pose"}
TARGET_TOPIC = "dexstack/grasp/target"  # std_msgs/String: the whole target as JSON (the policy node's input)


def _known_object(name: str) -> str | None:
    from dexstack.perception.objects import ObjectConfigError, load_object_model

    try:
        load_object_model(name)
    except ObjectConfigError as exc:
        return str(exc)
    return None


@dataclass
class Params:
    calibration: str = common.param("sim_tabletop", "Camera calibration (calibration/<name>/camera.yaml or a path): "
                                    "T_base_camera and the base frame.", read_only=True)
    object: str = common.param("can", "Object grasped (config/objects/<name>.yaml).", validate=_known_object)
    contact_gap_m: float = common.param(0.02, "A detected hand keypoint within this of the object's surface (beyond "
                                        "the finger's radius) is a contact (m). A sim_human_grasp's exact keypoints "
                                        "use the retargeter's own band, as the grasp policy's training targets.",
                                        min=0.001, max=0.05)
    table_z_m: float = common.param(0.0, "Table height in the base frame (m): the grasp keeps clear of it.",
                                    min=-1.0, max=2.0)
    sync_tolerance_s: float = common.param(0.015, "Color and depth pair if their stamps differ by at most this (s).",
                                           min=0.0, max=0.5)
    sim_human_grasp: str = common.param(
        "", "Simulation only: the human hand is this grasp kind of the object's library (config/grasps/) instead of "
            "detected (MediaPipe misses the rendered hand holding an object, docs/grasp.md); the object's pose still "
            "comes from the frame. '': detect the hand.", read_only=True)
    verify: bool = common.param(
        False, "Check the retargeting candidates by an open-loop grasp in the simulated grasp cell and keep the first "
               "that lifts the object (dexstack/grasp/verify.py, what bench/grasp.py measures; 2-30 s per target). "
               "Applies from the next target.")
    compute_on_start: bool = common.param(
        False, "Make a target from the first frame that gives one (retried about once a second) without waiting "
               "for ~/compute.", read_only=True)


def _pose(T: np.ndarray) -> Pose:
    xyz, quat = transform_to_pose(T)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in xyz)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quat)
    return pose


class GraspTargetNode(Node):
    def __init__(self) -> None:
        super().__init__("grasp_target")
        self.params = common.declare_params(self, Params, on_change=self._on_param)
        p = self.params
        self.calibration = load_camera_calibration(p.calibration)
        self.base_frame = self.calibration.parent_frame
        self._pipelines: dict = {}  # (object, gap, verify) -> GraspFromFrame: MediaPipe and the models load once
        self._frame = None
        self.pubs = {k: self.create_publisher(JointState if k == "joints" else PoseArray if k == "contacts"
                                              else PoseStamped, topic, common.LATCHED_QOS)
                     for k, topic in TOPICS.items()}
        self.target_pub = self.create_publisher(String, TARGET_TOPIC, common.LATCHED_QOS)
        self._auto = p.compute_on_start  # still to make the first target by itself
        self._last_try_s = -1e9
        self.input = RgbdInput(self, self.calibration, p.sync_tolerance_s, self._on_frame)
        self._object_sim = None  # sim_human_grasp: where the simulator has the object (the human's grasp)
        if p.sim_human_grasp:
            self.create_subscription(PoseStamped, common.SIM_OBJECT_GT_TOPIC, self._on_object_sim, common.STATE_QOS)
        self.create_service(Trigger, "~/compute", self._on_compute)
        self.get_logger().info(f"grasp_target up: object '{p.object}', call ~/compute to make a target from the "
                               f"latest frame; publishing {TOPICS['palm']} and the rest of dexstack/grasp/")

    def _on_object_sim(self, msg: PoseStamped) -> None:
        self._object_sim = msg.pose  # at the sim's state rate: read only when a target is made

    def _on_param(self, name: str, value) -> None:
        if name == "sync_tolerance_s":
            self.input.set_tolerance(value)

    def _on_frame(self, stamp_ns, header, rgb, depth, camera) -> None:
        self._frame = (header, rgb, depth, camera)
        now = time.monotonic()
        if self._auto and now - self._last_try_s >= 1.0:
            self._last_try_s = now
            ok, message = self._compute()
            if ok:
                self._auto = False
                self.get_logger().info(f"grasp target from the first usable frame: {message}")

    def _pipeline(self, camera):
        from dexstack.grasp.from_frame import GraspFromFrame
        from dexstack.perception.objects import load_object_model

        key = (self.params.object, self.params.contact_gap_m, self.params.verify)
        if key not in self._pipelines:
            for old in self._pipelines.values():
                old.close()
            self._pipelines = {key: GraspFromFrame(load_object_model(key[0]), self.calibration.T_parent_camera,
                                                   camera, self.calibration.depth_scale_m, contact_gap_m=key[1],
                                                   verify=key[2])}
        pipeline = self._pipelines[key]
        pipeline.camera = camera  # intrinsics from camera_info, when received
        return pipeline

    def _on_compute(self, request, response):
        response.success, response.message = self._compute()
        return response

    def _compute(self) -> tuple[bool, str]:
        from dexstack.grasp.from_frame import GraspInputError, target_to_dict

        if self._frame is None:
            return False, "no RGB-D frame received yet (is the camera running?)"
        header, rgb, depth, camera = self._frame
        try:
            library = self._library_keypoints()  # (object frame, base frame as held) or None: detect the hand
            result = self._pipeline(camera).estimate(rgb, depth, table_z_base_m=self.params.table_z_m,
                                                     keypoints_object_m=None if library is None else library[0],
                                                     keypoints_base_m=None if library is None else library[1])
        except GraspInputError as exc:
            self.get_logger().warning(f"no grasp target: {exc}", throttle_duration_sec=5.0)
            return False, str(exc)
        target, T_base_object = result.target, result.T_base_object
        stamp, frame = header.stamp, self.base_frame
        for key, T in (("palm", target.T_base_palm(T_base_object)),
                       ("pregrasp", target.T_base_palm(T_base_object, pregrasp=True)), ("object", T_base_object)):
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = stamp, frame
            msg.pose = _pose(T)
            self.pubs[key].publish(msg)
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(self._pipeline(camera).retargeter.hand.joint_names)
        joints.position = [float(v) for v in target.q_hand_rad]
        joints.velocity = [0.0] * len(joints.name)  # every float64[] filled (recorders choke on empty ones)
        joints.effort = [0.0] * len(joints.name)
        self.pubs["joints"].publish(joints)
        contacts = PoseArray()
        contacts.header.stamp, contacts.header.frame_id = stamp, frame
        p_base = target.link_positions_object_m[target.contact_mask] @ T_base_object[:3, :3].T + T_base_object[:3, 3]
        contacts.poses = [_pose(np.block([[np.eye(3), p[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]))
                          for p in p_base]
        self.pubs["contacts"].publish(contacts)
        data = target_to_dict(target, T_base_object)
        data["stamp_s"] = stamp.sec + 1e-9 * stamp.nanosec
        self.target_pub.publish(String(data=json.dumps(data)))
        return True, json.dumps({"object": target.object_name, "contact_match": round(target.contact_match, 3),
                                 "human_contact_fingers": list(target.human_contact_fingers),
                                 "retarget_ms": round(target.retarget_ms, 1)})

    def _library_keypoints(self):
        """The configured library grasp's keypoints (object frame) and where they are as the human holds the object
        where the simulator has it (base frame), or None to detect the hand."""
        if not self.params.sim_human_grasp:
            return None
        from dexstack.grasp.from_frame import GraspInputError
        from dexstack.grasp.human_grasps import human_grasp
        from dexstack.transforms import pose_to_transform, transform_points

        try:
            keypoints_object_m = human_grasp(self.params.object, self.params.sim_human_grasp).keypoints_object_m
        except (KeyError, ValueError) as exc:
            raise GraspInputError(f"sim_human_grasp '{self.params.sim_human_grasp}': {exc}") from None
        if self._object_sim is None:
            raise GraspInputError(f"sim_human_grasp: no simulator object pose on {common.SIM_OBJECT_GT_TOPIC} yet "
                                  "(the library hand is placed on the object where the sim has it: is sim_cell "
                                  "running?)")
        p, o = self._object_sim.position, self._object_sim.orientation
        T_base_object = pose_to_transform((p.x, p.y, p.z), (o.x, o.y, o.z, o.w))
        return keypoints_object_m, transform_points(T_base_object, keypoints_object_m)

    def destroy_node(self) -> None:
        for pipeline in self._pipelines.values():
            pipeline.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    common.run_node(GraspTargetNode, args)


if __name__ == "__main__":
    main()
