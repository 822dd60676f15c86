"""hand_pose: 3-D human hand keypoints and wrist pose in the robot base frame from the RGB-D camera.

Subscribes the color image, the aligned depth (16UC1) and its camera_info under realsense-ros names, pairs color
and depth by stamp, and runs :class:`dexstack.perception.hand.HandPipeline` (MediaPipe Hands by default). The
camera extrinsics ``T_base_camera`` come from the calibration file (``calibration`` parameter), not /tf.

Publishes, every processed frame, stamped with the image's stamp, in the calibration's parent (base) frame:

- ``/dexstack/hand_keypoints`` (geometry_msgs/PoseArray): the primary hand (``primary_hand``: right, left or the
  most confident) as 21 poses in MediaPipe/MANO order (``dexstack.perception.hand.KEYPOINT_NAMES``: wrist, thumb
  CMC..tip, index, middle, ring, pinky MCP..tip); positions only (orientation identity). An *empty* array means no
  such hand this frame: keypoints are never repeated from an older frame.
- ``/dexstack/hand_keypoints/confidence`` (std_msgs/Float32MultiArray): 21 values in [0, 1] (detector score x
  0.5 where the depth came from the model instead of the depth image), empty with no hand.
- ``/dexstack/hand_keypoints/handedness`` (std_msgs/String): "right" / "left" ("" with no hand).
- ``/dexstack/wrist_pose`` (geometry_msgs/PoseStamped): that hand's wrist frame (x toward the middle MCP, z out of
  the palm); only published when the hand is seen.
- ``/dexstack/hand_markers`` (visualization_msgs/MarkerArray): every accepted hand's keypoints and bones for RViz
  (DELETEALL when none).
- ``/diagnostics``: hands seen, input/processing rates and time, rejected detections by reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, Float32MultiArray, MultiArrayDimension, String
from visualization_msgs.msg import Marker, MarkerArray

from dexstack.calibration import load_camera_calibration
from dexstack.camera_model import CameraModel
from dexstack.diagnostics import Level, ReasonCounter, StatusReport
from dexstack.nodes import common
from dexstack.nodes.rgbd_input import RgbdInput
from dexstack.perception.depth import DepthPatchConfig
from dexstack.perception.hand import (
    BONES,
    BoneCheckConfig,
    HandFrameResult,
    HandPipeline,
    HandPipelineConfig,
    LiftConfig,
)
from dexstack.perception.hand_detectors import make_hand_detector
from dexstack.perception.one_euro import OneEuroConfig
from dexstack.transforms import transform_to_pose

KEYPOINTS_TOPIC = "dexstack/hand_keypoints"
CONFIDENCE_TOPIC = "dexstack/hand_keypoints/confidence"
HANDEDNESS_TOPIC = "dexstack/hand_keypoints/handedness"
WRIST_TOPIC = "dexstack/wrist_pose"
MARKERS_TOPIC = "dexstack/hand_markers"


@dataclass
class Params:
    calibration: str = common.param("sim_tabletop", "Camera calibration (calibration/<name>/camera.yaml or a path): "
                                    "T_base_camera and the base frame.", read_only=True)
    detector: str = common.param("mediapipe", "2-D hand detector: 'mediapipe' or 'package.module:Class'.",
                                 read_only=True)
    max_num_hands: int = common.param(2, "Most hands detected per frame.", read_only=True, min=1, max=4)
    model_complexity: int = common.param(1, "MediaPipe model: 0 lite, 1 full.", read_only=True, min=0, max=1)
    inference_scale: float = common.param(1.0, "The detector sees the color image scaled by this (e.g. 0.5: "
                                          "320x240 of 640x480); keypoints are in full-image pixels.", read_only=True,
                                          min=0.1, max=1.0)
    static_image_mode: bool = common.param(False, "MediaPipe: detect the palm in every frame (true) instead of "
                                           "tracking the hand from the last frame's landmarks (false).",
                                           read_only=True)
    min_detection_confidence: float = common.param(0.5, "Detector confidence to report a hand.", read_only=True,
                                                   min=0.0, max=1.0)
    min_tracking_confidence: float = common.param(0.5, "Detector confidence to keep tracking a hand.",
                                                  read_only=True, min=0.0, max=1.0)
    mirrored_input: bool = common.param(False, "True if the color image is mirrored (selfie camera).", read_only=True)
    primary_hand: str = common.param("any", "Hand published on /dexstack/hand_keypoints and /dexstack/wrist_pose "
                                     "('any': the most confident).", choices=("any", "right", "left"))
    depth_patch_radius_px: int = common.param(3, "Depth patch half-size around each keypoint (px).", min=0, max=15)
    min_depth_m: float = common.param(0.15, "Nearest valid depth (m).", min=0.0, max=2.0)
    max_depth_m: float = common.param(2.5, "Farthest valid depth (m).", min=0.2, max=10.0)
    outlier_tolerance_m: float = common.param(0.03, "Measured depth farther than this from the hand-shape "
                                              "prediction falls back to the model depth (m).", min=0.005, max=0.5)
    min_measured_keypoints: int = common.param(4, "Keypoints with valid depth needed to place a hand.", min=1, max=21)
    surface_offset_m: float = common.param(0.0, "Added to measured keypoint depths: skin surface -> joint centre "
                                           "(m; the camera sees the skin, keypoints are joint centres).",
                                           min=0.0, max=0.03)
    model_depth_confidence: float = common.param(0.5, "Confidence factor of keypoints placed by model depth.",
                                                 min=0.0, max=1.0)
    bone_repair_tolerance: float = common.param(0.4, "A measured keypoint whose bone is off by more than this "
                                                "fraction of its expected length takes the model's depth (a "
                                                "fingertip over the palm); 0: off.", min=0.0, max=2.0)
    one_euro_min_cutoff_hz: float = common.param(1.0, "One-Euro cutoff at rest (Hz).", min=0.01, max=100.0)
    one_euro_beta: float = common.param(5.0, "One-Euro speed coefficient (s/m).", min=0.0, max=1000.0)
    one_euro_d_cutoff_hz: float = common.param(1.0, "One-Euro derivative cutoff (Hz).", min=0.01, max=100.0)
    filter_reset_s: float = common.param(0.5, "A hand unseen for longer restarts its filter (s).", min=0.0, max=10.0)
    sync_tolerance_s: float = common.param(0.015, "Color and depth pair if their stamps differ by at most this (s).",
                                           min=0.0, max=0.5)
    diagnostics_rate_hz: float = common.param(1.0, "Rate of /diagnostics.", read_only=True, min=0.1, max=10.0)


def _validate(p: Params) -> str | None:
    if p.min_depth_m >= p.max_depth_m:
        return f"min_depth_m {p.min_depth_m} must be below max_depth_m {p.max_depth_m}"
    return None


def pipeline_config(p: Params) -> HandPipelineConfig:
    return HandPipelineConfig(
        lift=LiftConfig(
            patch=DepthPatchConfig(radius_px=p.depth_patch_radius_px, min_depth_m=p.min_depth_m,
                                   max_depth_m=p.max_depth_m),
            outlier_tolerance_m=p.outlier_tolerance_m, min_measured_keypoints=p.min_measured_keypoints,
            model_depth_confidence=p.model_depth_confidence, surface_offset_m=p.surface_offset_m,
            bone_repair_tolerance=p.bone_repair_tolerance),
        bones=BoneCheckConfig(),
        filter=OneEuroConfig(min_cutoff_hz=p.one_euro_min_cutoff_hz, beta=p.one_euro_beta,
                             d_cutoff_hz=p.one_euro_d_cutoff_hz),
        filter_reset_s=p.filter_reset_s, primary_hand=p.primary_hand)


class HandPoseNode(Node):
    def __init__(self) -> None:
        super().__init__("hand_pose")
        self.params = common.declare_params(self, Params, on_change=self._on_param, validate_all=_validate)
        p = self.params
        self.calibration = load_camera_calibration(p.calibration)
        self.base_frame = self.calibration.parent_frame
        detector = make_hand_detector(
            p.detector, max_num_hands=p.max_num_hands, model_complexity=p.model_complexity,
            min_detection_confidence=p.min_detection_confidence, min_tracking_confidence=p.min_tracking_confidence,
            mirrored_input=p.mirrored_input, inference_scale=p.inference_scale,
            static_image_mode=p.static_image_mode)
        self.pipeline = HandPipeline(detector, self.calibration.T_parent_camera, pipeline_config(p),
                                     self.calibration.depth_scale_m)
        self.rejections = ReasonCounter()
        self.processed = common.RateMeter(window_s=3.0)
        self.process_ms = 0.0
        self.frames_with_hand = 0
        self.frames_total = 0
        self.last_hands = ""

        self.keypoints_pub = self.create_publisher(PoseArray, KEYPOINTS_TOPIC, common.STATE_QOS)
        self.confidence_pub = self.create_publisher(Float32MultiArray, CONFIDENCE_TOPIC, common.STATE_QOS)
        self.handedness_pub = self.create_publisher(String, HANDEDNESS_TOPIC, common.STATE_QOS)
        self.wrist_pub = self.create_publisher(PoseStamped, WRIST_TOPIC, common.STATE_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, MARKERS_TOPIC, 10)
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        self.input = RgbdInput(self, self.calibration, p.sync_tolerance_s, self._on_frame)
        common.live_rate_timer(self, "diagnostics_rate_hz", p.diagnostics_rate_hz, self._publish_diagnostics)
        self.get_logger().info(
            f"hand_pose up: detector '{detector.name}', calibration '{p.calibration}' "
            f"(base frame '{self.base_frame}'), publishing {KEYPOINTS_TOPIC} and {WRIST_TOPIC}")

    def _on_param(self, name: str, value) -> None:
        if name == "sync_tolerance_s":
            self.input.set_tolerance(value)
        else:
            self.pipeline.config = pipeline_config(self.params)
            self.pipeline.reset()

    # ------------------------------------------------------------------ processing
    def _on_frame(self, stamp_ns: int, header, rgb: np.ndarray, depth: np.ndarray, camera: CameraModel) -> None:
        t0 = time.perf_counter()
        result = self.pipeline.process(rgb, depth, camera, stamp_ns * 1e-9)
        self.process_ms = 1000.0 * (time.perf_counter() - t0)
        self.processed.tick()
        self.frames_total += 1
        self.frames_with_hand += result.primary is not None
        for label, reason in result.rejected:
            self.rejections.add(reason.split(":")[0])  # counted by kind; the detail goes to the log
            self.get_logger().debug(f"rejected {label} hand: {reason}")
        self._publish(result, header.stamp)

    def _publish(self, result: HandFrameResult, stamp) -> None:
        poses = PoseArray()
        poses.header.stamp = stamp
        poses.header.frame_id = self.base_frame
        confidence = Float32MultiArray()
        hand = result.primary
        if hand is not None:
            for p in hand.p_base_m:
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = map(float, p)
                pose.orientation.w = 1.0
                poses.poses.append(pose)
            confidence.data = [float(c) for c in hand.confidence]
        confidence.layout.dim = [MultiArrayDimension(label="keypoints", size=len(confidence.data),
                                                     stride=len(confidence.data))]
        self.last_hands = ",".join(h.handedness for h in result.hands)
        self.keypoints_pub.publish(poses)
        self.confidence_pub.publish(confidence)
        self.handedness_pub.publish(String(data=hand.handedness if hand is not None else ""))
        if hand is not None:
            wrist = PoseStamped()
            wrist.header = poses.header
            xyz, quat = transform_to_pose(hand.T_base_wrist)
            wrist.pose.position.x, wrist.pose.position.y, wrist.pose.position.z = map(float, xyz)
            o = wrist.pose.orientation
            o.x, o.y, o.z, o.w = map(float, quat)
            self.wrist_pub.publish(wrist)
        self.markers_pub.publish(self._markers(result, poses.header))

    def _markers(self, result: HandFrameResult, header) -> MarkerArray:
        markers = MarkerArray()
        if not result.hands:
            markers.markers.append(Marker(header=header, action=Marker.DELETEALL))
            return markers
        for k, hand in enumerate(result.hands):
            rgb = (0.1, 0.8, 0.2) if hand.handedness == "right" else (0.2, 0.4, 1.0)
            joints = Marker(header=header, ns=f"{hand.handedness}_keypoints", id=k, type=Marker.SPHERE_LIST,
                            action=Marker.ADD)
            joints.scale.x = joints.scale.y = joints.scale.z = 0.012
            joints.pose.orientation.w = 1.0
            for p, c in zip(hand.p_base_m, hand.confidence):
                joints.points.append(Point(x=float(p[0]), y=float(p[1]), z=float(p[2])))
                joints.colors.append(ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=float(0.3 + 0.7 * c)))
            bones = Marker(header=header, ns=f"{hand.handedness}_bones", id=k, type=Marker.LINE_LIST,
                           action=Marker.ADD)
            bones.scale.x = 0.004
            bones.pose.orientation.w = 1.0
            bones.color = ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=1.0)
            for a, b in BONES:
                for i in (a, b):
                    p = hand.p_base_m[i]
                    bones.points.append(Point(x=float(p[0]), y=float(p[1]), z=float(p[2])))
            for m in (joints, bones):
                m.lifetime.nanosec = 500_000_000  # gone if the node stops publishing
                markers.markers.append(m)
        return markers

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        last = self.input.last_frame_s
        rejected = self.rejections.counts()
        if last is None or now - last > 2.0:
            level, message = Level.WARN, "no RGB-D frames"
        elif self.last_hands:
            level, message = Level.OK, f"tracking: {self.last_hands}"
        else:
            level, message = Level.OK, "no hand"
        values = {
            "input_hz": f"{self.input.frames_in.rate_hz():.2f}",
            "processed_hz": f"{self.processed.rate_hz():.2f}",
            "process_ms": f"{self.process_ms:.1f}",
            "hands": self.last_hands or "none",
            "frames": str(self.frames_total),
            "frames_with_hand": str(self.frames_with_hand),
            "unpaired_frames": str(self.input.pairer.dropped),
            "bad_images": str(self.input.bad_images.total),
            "rejected_total": str(sum(rejected.values())),
            **{f"rejected[{reason}]": str(n) for reason, n in rejected.items()},
        }
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("hand_pose", level, message, values)]))

    def close(self) -> None:
        self.pipeline.detector.close()


def main(args: list[str] | None = None) -> None:
    common.run_node(HandPoseNode, args)


if __name__ == "__main__":
    main()
