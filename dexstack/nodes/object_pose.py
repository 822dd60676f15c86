"""object_pose: 6-D pose of a known object in the robot base frame from the RGB-D camera.

Subscribes the color image, the aligned depth (16UC1) and its camera_info (realsense-ros names), pairs them by
stamp and runs :class:`dexstack.perception.object_pose.ObjectPoseEstimator` with ``method`` ``fiducial``
(AprilTag 36h11, IPPE_SQUARE, depth-checked) or ``model`` (point-to-plane ICP of the object's shape against the
depth cloud, seeded by the previous pose, the tags or a coarse search). The object (shape, tags) comes from
``config/objects/<object>.yaml``; ``T_base_camera`` from the calibration file (``calibration``), not /tf.

Through occlusion (the hand grasping or covering the object) the pose is *kept*: a
:class:`~dexstack.perception.pose_keeper.PoseKeeper` predicts it (moving with the palm, from ``/joint_states`` and
the robot profile's kinematics, when it was last seen near the palm; else constant velocity, damped), the
prediction seeds the fit and gates re-acquisition (a shape fit far from it is the hand), and while no fit is
accepted the prediction is published as a *stale* pose: its covariance grows with its age from at least
(1 cm)^2 in position (a measurement's is ~(1 mm)^2), and ``/diagnostics`` says ``stale``, the prediction mode, the
pose's age and a confidence. Beyond the prediction's horizon nothing is published (lost).

With ``robot_self_filter`` (default) the robot's hand, from the same joint state (its capsule skeleton, the safety
gate's :class:`~dexstack.safety.collision.CollisionModel`), is removed from the depth before the fit, so the cube is
*measured* through the grasp from the faces the fingers leave visible instead of the fit sliding onto the fingers
(measured on the lift references in-process: measured frames 0.55 -> 1.0, worst published error 70 -> 10 mm; see
docs/benchmarks.md). The same capsules check each pose physically (``max_robot_overlap_m``): a fit the hand reaches
into is refused (under the closing fingers ICP can settle a few mm into them, turned), and a kept pose carried into
fingers that closed after the last measurement is moved out of them.

Publishes, stamped with the image's stamp, in the calibration's parent (base) frame, for frames where the
object is found or kept:

- ``/dexstack/object_pose`` (geometry_msgs/PoseStamped);
- ``/dexstack/object_pose_with_covariance`` (geometry_msgs/PoseWithCovarianceStamped): the same pose with its
  6x6 covariance (x, y, z, rx, ry, rz about the base axes; ICP or PnP residuals);
- ``/diagnostics`` at ``diagnostics_rate_hz`` and at once when tracking is lost or regained: status (OK
  tracking / WARN lost with the reason), fitness (depth agreement), coverage, ICP RMS, reprojection error, tags,
  rates and processing time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.node import Node

from dexstack.calibration import load_camera_calibration
from dexstack.camera_model import CameraModel
from dexstack.diagnostics import Level, ReasonCounter, StatusReport
from dexstack.nodes import common
from dexstack.nodes.rgbd_input import RgbdInput
from dexstack.perception.icp import IcpConfig
from dexstack.perception.object_pose import (
    METHODS,
    ObjectPoseConfig,
    ObjectPoseEstimator,
    ObjectPoseResult,
    Occluders,
)
from dexstack.perception.objects import load_object_model
from dexstack.perception.pose_keeper import PoseKeeper, PoseKeeperConfig, Prediction, track_frame
from dexstack.perception.tags import TagDetectorConfig
from dexstack.transforms import transform_to_pose

POSE_TOPIC = "dexstack/object_pose"
POSE_COV_TOPIC = "dexstack/object_pose_with_covariance"


@dataclass
class Params:
    calibration: str = common.param("sim_tabletop", "Camera calibration (calibration/<name>/camera.yaml or a path): "
                                    "T_base_camera and the base frame.", read_only=True)
    object: str = common.param("cube", "Object config (config/objects/<name>.yaml or a path).", read_only=True)
    method: str = common.param("model", "Pose method.", choices=METHODS)
    tag_upsample: int = common.param(2, "Tag detection on the image scaled up by this factor.", min=1, max=4)
    fiducial_depth_refine: bool = common.param(True, "Fiducial: correct the tag poses with the depth planes.")
    use_tags_for_init: bool = common.param(True, "Model: seed ICP from the tags when not tracking.")
    coarse_search: bool = common.param(True, "Model: search the depth image when neither tracking nor tags seed.")
    max_track_gap_s: float = common.param(0.5, "Model: the previous pose seeds ICP if younger than this (s).",
                                          min=0.0, max=10.0)
    min_fitness: float = common.param(0.6, "Lost below this depth agreement over the visible surface.",
                                      min=0.0, max=1.0)
    min_coverage: float = common.param(0.2, "Lost below this fraction of the visible surface confirmed by depth.",
                                       min=0.0, max=1.0)
    max_rmse_m: float = common.param(0.004, "Model: lost above this ICP point-to-plane RMS (m).", min=0.0005, max=0.05)
    sync_tolerance_s: float = common.param(0.015, "Color and depth pair if their stamps differ by at most this (s).",
                                           min=0.0, max=0.5)
    diagnostics_rate_hz: float = common.param(1.0, "Rate of /diagnostics.", read_only=True, min=0.1, max=10.0)
    keep_pose: bool = common.param(True, "Through occlusion, publish a predicted (stale) pose instead of none.")
    robot_profile: str = common.param("panda_allegro", "Robot profile whose palm a grasped object moves with "
                                      "(needs /joint_states); empty: constant-velocity prediction only.",
                                      read_only=True)
    max_prediction_s: float = common.param(2.0, "Longest constant-velocity prediction (s).", min=0.0, max=10.0)
    max_attached_s: float = common.param(10.0, "Longest prediction of an object moving with the palm (s).",
                                         min=0.0, max=60.0)
    table_roi: bool = common.param(
        False, "Ignore depth outside the table workspace box (dexstack.grasp.from_frame.DEFAULT_OBJECT_ROI_M, base "
               "frame): the coarse search otherwise may fit a can to the robot's own base.", read_only=True)
    robot_self_filter: bool = common.param(True, "Remove the robot hand's depth points (its capsules at the "
                                           "image's joint state) before the fit (needs robot_profile).")
    max_robot_overlap_m: float = common.param(
        0.003, "With robot_self_filter: refuse a fit the hand's capsules reach deeper into than this (m), and move a "
               "kept pose out of the hand to this depth; 0: off.", min=0.0, max=0.05)


def estimator_config(p: Params) -> ObjectPoseConfig:
    return ObjectPoseConfig(
        method=p.method, tags=TagDetectorConfig(upsample=p.tag_upsample),
        fiducial_depth_refine=p.fiducial_depth_refine, icp=IcpConfig(), use_tags_for_init=p.use_tags_for_init,
        coarse_search=p.coarse_search, max_track_gap_s=p.max_track_gap_s, min_fitness=p.min_fitness,
        min_coverage=p.min_coverage, max_rmse_m=p.max_rmse_m, max_robot_overlap_m=p.max_robot_overlap_m)



def live_config(p: Params) -> tuple[ObjectPoseConfig, PoseKeeperConfig, bool, bool]:
    """Everything a parameter change applies live: the estimator's config, the pose keeper's, keep_pose and
    robot_self_filter."""
    return (estimator_config(p), PoseKeeperConfig(max_prediction_s=p.max_prediction_s,
                                                  max_attached_s=p.max_attached_s), p.keep_pose,
            p.robot_self_filter)


class ObjectPoseNode(Node):
    def __init__(self) -> None:
        super().__init__("object_pose")
        self.params = common.declare_params(self, Params, on_change=self._on_param)
        p = self.params
        self.calibration = load_camera_calibration(p.calibration)
        self.base_frame = self.calibration.parent_frame
        self.model = load_object_model(p.object)
        self.estimator = self._make_estimator()
        self.lost_reasons = ReasonCounter()
        self.processed = common.RateMeter(window_s=3.0)
        self.published = common.RateMeter(window_s=3.0)
        self.process_ms = 0.0
        self.last: ObjectPoseResult | None = None
        self.keeper = PoseKeeper(self._keeper_config())
        self.prediction: Prediction | None = None  # the last published stale pose (None: measured or lost)
        self.stale_published = common.RateMeter(window_s=3.0)
        self.palm = _PalmTracker(self, p.robot_profile) if p.robot_profile else None

        self.pose_pub = self.create_publisher(PoseStamped, POSE_TOPIC, common.STATE_QOS)
        self.pose_cov_pub = self.create_publisher(PoseWithCovarianceStamped, POSE_COV_TOPIC, common.STATE_QOS)
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        self.input = RgbdInput(self, self.calibration, p.sync_tolerance_s, self._on_frame)
        common.live_rate_timer(self, "diagnostics_rate_hz", p.diagnostics_rate_hz, self._publish_diagnostics)
        self.get_logger().info(
            f"object_pose up: object '{self.model.name}' ({self.model.shape}, {len(self.model.tags)} tags), "
            f"method '{p.method}', base frame '{self.base_frame}', publishing {POSE_TOPIC}")

    def _make_estimator(self) -> ObjectPoseEstimator:
        return ObjectPoseEstimator(self.model, self.calibration.T_parent_camera, estimator_config(self.params),
                                   self.calibration.depth_scale_m)

    def _keeper_config(self) -> PoseKeeperConfig:
        return live_config(self.params)[1]

    def _on_param(self, name: str, value) -> None:
        if name == "sync_tolerance_s":
            self.input.set_tolerance(value)
        elif name in ("max_prediction_s", "max_attached_s"):
            self.keeper.config = self._keeper_config()
        elif name not in ("keep_pose", "robot_self_filter"):  # a new estimator (new settings): starts untracked
            self.estimator = self._make_estimator()

    def _on_frame(self, stamp_ns: int, header, rgb: np.ndarray, depth: np.ndarray, camera: CameraModel) -> None:
        t0 = time.perf_counter()
        t_s = stamp_ns * 1e-9
        q = self.palm.q_at(stamp_ns) if self.palm is not None else None
        T_palm = self.palm.palm_pose(q) if q is not None else None
        occluders = self.palm.hand_capsules(q) if q is not None and self.params.robot_self_filter else None
        if self.params.table_roi:
            from dexstack.grasp.from_frame import DEFAULT_OBJECT_ROI_M, mask_depth_outside

            depth = mask_depth_outside(depth, camera, self.calibration.T_parent_camera,
                                       self.calibration.depth_scale_m, DEFAULT_OBJECT_ROI_M)
        frame = track_frame(self.estimator, self.keeper, t_s, rgb, depth, camera, T_palm, occluders,
                            keep=self.params.keep_pose)
        result = frame.result
        self.process_ms = 1000.0 * (time.perf_counter() - t0)
        self.processed.tick()
        changed = self.last is None or self.last.tracking != result.tracking
        self.last = result
        self.prediction = None
        if not result.tracking:
            self.lost_reasons.add(result.lost_kind)
            self.prediction = frame.prediction  # kept through the occlusion: published as stale
        if frame.T_base_object is not None:
            self._publish_pose(frame.T_base_object, frame.covariance_base, header.stamp)
            if not result.tracking:
                self.stale_published.tick()
        if changed:
            if not result.tracking:
                self.get_logger().warning(f"object '{self.model.name}' lost: {result.reason}")
            else:
                self.get_logger().info(f"object '{self.model.name}' found (init: {result.init})")
            self._publish_diagnostics()

    def _publish_pose(self, T_base_object: np.ndarray, covariance_base: np.ndarray, stamp) -> None:
        msg = PoseStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = self.base_frame
        xyz, quat = transform_to_pose(T_base_object)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, xyz)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = map(float, quat)
        with_cov = PoseWithCovarianceStamped()
        with_cov.header = msg.header
        with_cov.pose.pose = msg.pose
        cov = np.nan_to_num(covariance_base, nan=1e6, posinf=1e6, neginf=1e6)
        with_cov.pose.covariance = [float(v) for v in cov.ravel()]
        self.pose_pub.publish(msg)
        self.pose_cov_pub.publish(with_cov)
        self.published.tick()

    def _publish_diagnostics(self) -> None:
        r = self.last
        last_frame = self.input.last_frame_s
        if last_frame is None or time.monotonic() - last_frame > 2.0:
            level, message = Level.WARN, "no RGB-D frames"
        elif r is not None and r.tracking:
            level, message = Level.OK, f"tracking (init: {r.init})"
        elif self.prediction is not None:
            pr = self.prediction
            level, message = Level.WARN, (f"stale: kept by prediction ({pr.mode}, {pr.age_s:.2f} s old) while "
                                          f"not measured: {r.reason if r else ''}")
        else:
            level, message = Level.WARN, f"lost: {r.reason if r else 'no frame yet'}"
        values = {
            "object": self.model.name,
            "method": r.method if r else self.params.method,  # of the last result
            "tracking": str(bool(r and r.tracking)).lower(),
            "stale": str(self.prediction is not None).lower(),
            "robot_self_filter": str(self.params.robot_self_filter and self.palm is not None).lower(),
            "prediction": self.prediction.mode if self.prediction is not None else "",
            "pose_age_s": f"{self.prediction.age_s:.3f}" if self.prediction is not None else "0.000",
            "confidence": f"{self.prediction.confidence:.3f}" if self.prediction is not None else (
                "1.000" if r is not None and r.tracking else "0.000"),
            "stale_published_hz": f"{self.stale_published.rate_hz():.2f}",
            "fitness": f"{r.fitness:.3f}" if r else "nan",
            "coverage": f"{r.coverage:.3f}" if r else "nan",
            "icp_rmse_mm": f"{1000 * r.rmse_m:.2f}" if r else "nan",
            "reprojection_px": f"{r.reprojection_px:.2f}" if r else "nan",
            "tags_seen": ",".join(map(str, r.tags_seen)) if r else "",
            "input_hz": f"{self.input.frames_in.rate_hz():.2f}",
            "processed_hz": f"{self.processed.rate_hz():.2f}",
            "published_hz": f"{self.published.rate_hz():.2f}",
            "process_ms": f"{self.process_ms:.1f}",
            "unpaired_frames": str(self.input.pairer.dropped),
            "lost_total": str(self.lost_reasons.total),
            **{f"lost[{reason}]": str(n) for reason, n in self.lost_reasons.counts().items()},
        }
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("object_pose", level, message, values)]))


class _PalmTracker:
    """The robot's joint state at an image's stamp (/joint_states), and from it the palm's pose and the hand's
    capsules (base frame)."""

    def __init__(self, node: Node, robot_profile: str, history: int = 200) -> None:
        from collections import deque

        from sensor_msgs.msg import JointState

        from dexstack.robot.description import load_description
        from dexstack.robot.kinematics import Kinematics
        from dexstack.safety.collision import CollisionModel

        self.description = load_description(robot_profile)
        self.kinematics = Kinematics(self.description)
        self.capsules = CollisionModel(self.description)
        self.palm_link = self.description.profile.hand.palm_link
        self._index = {name: i for i, name in enumerate(self.description.joints)}
        self._q = self.description.home()
        self._seen = np.zeros(len(self._q), dtype=bool)
        self._history: deque[tuple[int, np.ndarray]] = deque(maxlen=history)
        node.create_subscription(JointState, "/joint_states", self._on_joint_state, common.STATE_QOS)

    def _on_joint_state(self, msg) -> None:
        for name, value in zip(msg.name, msg.position):
            i = self._index.get(name)
            if i is not None:
                self._q[i] = value
                self._seen[i] = True
        if self._seen.all():
            self._history.append((common.stamp_to_ns(msg.header.stamp), self._q.copy()))

    def q_at(self, stamp_ns: int) -> np.ndarray | None:
        """The joint state nearest ``stamp_ns`` (None before every joint was heard, or if the nearest is more than
        0.1 s away)."""
        if not self._history:
            return None
        t, q = min(self._history, key=lambda item: abs(item[0] - stamp_ns))
        if abs(t - stamp_ns) > 100_000_000:
            return None
        return q

    def palm_pose(self, q: np.ndarray) -> np.ndarray:
        """T_base_palm at ``q``."""
        return self.kinematics.frame_pose(q, self.palm_link)

    def hand_capsules(self, q: np.ndarray) -> Occluders:
        """The hand's capsule skeleton at ``q`` (base frame)."""
        return Occluders(*self.capsules.capsules_base(q, hand_only=True))

    def palm_at(self, stamp_ns: int) -> np.ndarray | None:
        """T_base_palm from the joint state nearest ``stamp_ns`` (see :meth:`q_at`)."""
        q = self.q_at(stamp_ns)
        return None if q is None else self.palm_pose(q)


def main(args: list[str] | None = None) -> None:
    common.run_node(ObjectPoseNode, args)


if __name__ == "__main__":
    main()
