"""SceneLogger: ROS messages (rclpy's or rosbags', duck-typed) -> Rerun entities, throttled per stream.

Entity layout (``world`` is the robot base frame, z up):

- ``world/robot/<link>``: link meshes (static), posed from ``/joint_states`` with the description's kinematics;
- ``world/camera`` (``T_base_camera`` from the calibration) / ``image`` (pinhole: the frustum) / ``rgb``, ``depth``;
- ``world/points``: the depth cloud in the base frame, coloured by the RGB image;
- ``world/hand/keypoints`` + ``skeleton`` (21 MANO-order points and bones), ``world/hand/wrist`` (axes);
- ``world/object`` (estimated pose, axes) / ``model`` (the object's shape); ``world/object_gt`` (sim ground truth);
- ``joints/<joint>/{measured,before_gate,after_gate}``: joint positions and targets before / after the safety gate;
- ``events/safety``: safety monitor interventions and state changes (text log), ``safety/interventions_total``.

Time is the ``ros_time`` timeline: the message's header stamp, or its arrival time where it has none (commands).
Every stream is throttled on that time (:class:`VizRates`), so a burst is dropped, never queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from dexstack.calibration import CameraCalibration
from dexstack.perception.objects import ObjectModel, load_stl
from dexstack.record.images import depth_mm, image_array, to_rgb8
from dexstack.retarget.keypoints import FINGERS, WRIST
from dexstack.robot.description import RobotDescription
from dexstack.transforms import quat_xyzw_to_matrix
from dexstack.viz.robot_model import RobotModel

TIMELINE = "ros_time"
FINGER_COLORS = {"thumb": (230, 80, 60), "index": (240, 190, 40), "middle": (70, 200, 90), "ring": (60, 140, 230),
                 "pinky": (170, 90, 220)}
SERIES_COLORS = {"measured": (60, 200, 90), "before_gate": (250, 150, 40), "after_gate": (70, 130, 250)}


@dataclass(frozen=True)
class VizTopics:
    """Topic names the viewer draws (absolute). Driver command topics come from the robot profile."""

    color: str = "/camera/camera/color/image_raw"
    color_info: str = "/camera/camera/color/camera_info"
    depth: str = "/camera/camera/aligned_depth_to_color/image_raw"
    joint_states: str = "/joint_states"
    hand_keypoints: str = "/dexstack/hand_keypoints"
    wrist_pose: str = "/dexstack/wrist_pose"
    object_pose: str = "/dexstack/object_pose"
    object_pose_gt: str = "/dexstack/sim/object_pose_gt"
    arm_before: str = "/dexstack/arm/command"
    hand_before: str = "/dexstack/hand/command"
    arm_after: str = "/arm_controller/joint_trajectory"
    hand_after: str = "/hand_controller/commands"
    diagnostics: str = "/diagnostics"

    @classmethod
    def for_profile(cls, description: RobotDescription) -> VizTopics:
        p = description.profile
        return cls(arm_after=p.arm.command.topic, hand_after=p.hand.command.topic)


@dataclass(frozen=True)
class VizRates:
    """Most messages per second drawn per stream (on message time); the rest are dropped."""

    image_hz: float = 5.0
    depth_hz: float = 2.0  # depth image and point cloud
    joint_states_hz: float = 15.0
    commands_hz: float = 30.0
    poses_hz: float = 15.0  # keypoints, wrist, object
    cloud_stride: int = 4  # every n-th pixel in u and v

    def __post_init__(self) -> None:
        for name in ("image_hz", "depth_hz", "joint_states_hz", "commands_hz", "poses_hz"):
            value = getattr(self, name)
            if not (0.0 < value <= 1000.0):
                raise ValueError(f"VizRates.{name}={value} must be in (0, 1000] Hz")
        if not (1 <= self.cloud_stride <= 64):
            raise ValueError(f"VizRates.cloud_stride={self.cloud_stride} must be in [1, 64]")


def stamp_ns(msg) -> int:
    """Header stamp of a message in ns (0 when it has no header or an unset stamp)."""
    header = getattr(msg, "header", None)
    if header is None:
        return 0
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def pose_matrix(pose) -> np.ndarray:
    """4x4 transform of a geometry_msgs/Pose."""
    p, q = pose.position, pose.orientation
    T = np.eye(4)
    T[:3, :3] = quat_xyzw_to_matrix((q.x, q.y, q.z, q.w))
    T[:3, 3] = (p.x, p.y, p.z)
    return T


def _transform(T: np.ndarray) -> rr.Transform3D:
    return rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3])


def _rgb(rgba) -> list[int]:
    return [int(255 * c) for c in rgba[:3]] + [int(255 * rgba[3])]


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit vertex normals: the area-weighted sum of the adjacent faces' normals (cross products)."""
    v = vertices[triangles]
    face = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _level(raw) -> int:
    return raw[0] if isinstance(raw, (bytes, bytearray)) else int(raw)


def default_blueprint(live: bool = True) -> rrb.Blueprint:
    """3-D scene | camera image, depth | joint series, safety events; the time panel on our one timeline
    (``ros_time``), following the newest data when ``live``. Without the timeline named the viewer could settle
    on its default ``log_time``, which this recording does not have: every view but the static meshes stayed empty
    ("No data available")."""
    return rrb.Blueprint(
        rrb.Horizontal(
            # the depth image is drawn in 3-D as world/points (RGB-coloured, base frame), not a second time
            rrb.Spatial3DView(name="Scene (base frame)", origin="/world",
                              contents=["+ $origin/**", "- /world/camera/image/depth"],
                              eye_controls=rrb.EyeControls3D(position=(1.6, -1.3, 1.1), look_target=(0.45, 0.0, 0.2),
                                                             eye_up=(0.0, 0.0, 1.0))),
            rrb.Vertical(
                rrb.Horizontal(
                    rrb.Spatial2DView(name="RGB", origin="/world/camera/image/rgb"),
                    rrb.Spatial2DView(name="Depth", origin="/world/camera/image/depth"),
                ),
                rrb.TimeSeriesView(name="Joints: targets before/after the gate vs measured", origin="/joints"),
                rrb.TextLogView(name="Safety events", origin="/events"),
                row_shares=[2, 2, 1],
            ),
            column_shares=[3, 2],
        ),
        rrb.TimePanel(state="collapsed", timeline=TIMELINE, play_state="following" if live else None),
        collapse_panels=True,
    )


@dataclass
class _Throttle:
    period_ns: int
    last_ns: int = field(default=-(2**62))

    def ready(self, t_ns: int) -> bool:
        if t_ns - self.last_ns < self.period_ns and t_ns >= self.last_ns:
            return False
        self.last_ns = t_ns
        return True


class SceneLogger:
    """Logs the cell into one Rerun recording. ``handle(topic, msg, arrival_ns)`` is the only entry point for
    messages; it returns whether the message was drawn (False: throttled, or a topic it does not draw)."""

    def __init__(self, recording: rr.RecordingStream, description: RobotDescription,
                 calibration: CameraCalibration | None = None, object_model: ObjectModel | None = None,
                 topics: VizTopics | None = None, rates: VizRates | None = None):
        self.rec = recording
        self.description = description
        self.calibration = calibration
        self.object_model = object_model
        self.topics = topics or VizTopics.for_profile(description)
        self.rates = rates or VizRates()
        self.robot = RobotModel(description)
        self.K: np.ndarray | None = None
        self._pinhole_size = (0, 0)
        self._latest_rgb: np.ndarray | None = None
        self._interventions_total: int | None = None
        self._intervention_counts: dict[str, int] = {}
        self._status_seen: dict[str, tuple[int, str]] = {}
        self.drawn: dict[str, int] = {}  # per topic, for diagnostics and tests
        self.dropped: dict[str, int] = {}
        r, t = self.rates, self.topics
        hz = {t.color: r.image_hz, t.depth: r.depth_hz, t.joint_states: r.joint_states_hz,
              t.arm_before: r.commands_hz, t.hand_before: r.commands_hz, t.arm_after: r.commands_hz,
              t.hand_after: r.commands_hz, t.hand_keypoints: r.poses_hz, t.wrist_pose: r.poses_hz,
              t.object_pose: r.poses_hz, t.object_pose_gt: r.poses_hz}
        self._throttles = {topic: _Throttle(int(1e9 / rate)) for topic, rate in hz.items()}
        self._handlers: dict[str, Callable] = {
            t.color: self._color, t.color_info: self._camera_info, t.depth: self._depth,
            t.joint_states: self._joint_states, t.hand_keypoints: self._keypoints, t.wrist_pose: self._wrist,
            t.object_pose: lambda m: self._object(m, "world/object"),
            t.object_pose_gt: lambda m: self._object(m, "world/object_gt"),
            t.arm_before: lambda m: self._trajectory(m, "before_gate"),
            t.arm_after: lambda m: self._trajectory(m, "after_gate"),
            t.hand_before: lambda m: self._hand_command(m, "before_gate"),
            t.hand_after: lambda m: self._hand_command(m, "after_gate"),
            t.diagnostics: self._diagnostics,
        }

    @property
    def topic_names(self) -> list[str]:
        return list(self._handlers)

    # ------------------------------------------------------------------ static scene
    def log_static(self) -> None:
        """The world frame, robot meshes, camera frustum (calibration) and the object's model."""
        log = self.rec.log
        log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        for link, shapes in self.robot.shapes.items():
            for i, s in enumerate(shapes):
                path = ["world", "robot", link, f"shape_{i}"]
                if s.kind == "mesh":
                    log(path, rr.Mesh3D(vertex_positions=s.vertices, triangle_indices=s.triangles,
                                        vertex_normals=vertex_normals(s.vertices, s.triangles),
                                        albedo_factor=_rgb(s.rgba)), static=True)
                    continue
                log(path, _transform(s.T_link_shape), static=True)
                if s.kind == "box":
                    log(path, rr.Boxes3D(half_sizes=[s.size], colors=[_rgb(s.rgba)], fill_mode="solid"), static=True)
                elif s.kind == "sphere":
                    log(path, rr.Ellipsoids3D(radii=[s.size[0]], colors=[_rgb(s.rgba)], fill_mode="solid"),
                        static=True)
                else:
                    archetype = rr.Cylinders3D if s.kind == "cylinder" else rr.Capsules3D
                    log(path, archetype(lengths=[2 * s.size[1]], radii=[s.size[0]], colors=[_rgb(s.rgba)]),
                        static=True)
        self._pose_robot(self.description.joints, self.description.home(), static=True)
        if self.calibration is not None:
            log("world/camera", _transform(self.calibration.T_parent_camera), static=True)
            log("world/camera", rr.TransformAxes3D(0.05), static=True)
            i = self.calibration.intrinsics
            self._pinhole(i.K, i.width, i.height)
        if self.object_model is not None:
            for path, color, fill in (("world/object/model", (230, 120, 40), "solid"),
                                      ("world/object_gt/model", (255, 255, 255), "majorwireframe")):
                archetype = self._object_archetype(self.object_model, color, fill)
                if archetype is not None:
                    log(path, archetype, static=True)
            log("world/object", rr.TransformAxes3D(0.05), static=True)
        for kind, color in SERIES_COLORS.items():
            for joint in self.description.joints:
                log(["joints", joint, kind], rr.SeriesLines(colors=[color], names=[f"{joint} {kind}"]), static=True)
        log("safety/interventions_total", rr.SeriesLines(colors=[(230, 60, 60)], names=["interventions"]),
            static=True)

    @staticmethod
    def _object_archetype(model: ObjectModel, color, fill):
        if model.shape == "box":
            return rr.Boxes3D(half_sizes=[np.asarray(model.size_m) / 2], colors=[color], fill_mode=fill)
        if model.shape == "sphere":
            return rr.Ellipsoids3D(radii=[model.size_m[0]], colors=[color], fill_mode=fill)
        if model.shape == "cylinder":
            return rr.Cylinders3D(radii=[model.size_m[0]], lengths=[model.size_m[1]], colors=[color], fill_mode=fill)
        if model.shape == "mesh" and model.mesh_path is not None:
            tri = load_stl(model.mesh_path)
            return rr.Mesh3D(vertex_positions=tri.reshape(-1, 3),
                             triangle_indices=np.arange(len(tri) * 3, dtype=np.uint32).reshape(-1, 3),
                             albedo_factor=list(color) + [255])
        return None

    def _pinhole(self, K: np.ndarray, width: int, height: int) -> None:
        self.K, self._pinhole_size = K, (width, height)
        self.rec.log("world/camera/image", rr.Pinhole(image_from_camera=K, width=width, height=height,
                                                      camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.15),
                     static=True)

    # ------------------------------------------------------------------ messages
    def handle(self, topic: str, msg, arrival_ns: int) -> bool:
        handler = self._handlers.get(topic)
        if handler is None:
            return False
        t_ns = stamp_ns(msg) or arrival_ns
        throttle = self._throttles.get(topic)
        if throttle is not None and not throttle.ready(t_ns):
            self.dropped[topic] = self.dropped.get(topic, 0) + 1
            return False
        self.rec.set_time(TIMELINE, timestamp=np.datetime64(int(t_ns), "ns"))  # exact ns (a float loses ~100 ns)
        handler(msg)
        self.drawn[topic] = self.drawn.get(topic, 0) + 1
        return True

    def _color(self, msg) -> None:
        rgb = to_rgb8(image_array(msg), str(msg.encoding))
        self._latest_rgb = rgb
        self._match_pinhole(rgb.shape[1], rgb.shape[0])
        import cv2  # JPEG keeps the .rrd and the browser stream small (~30 KB instead of 900 KB per frame)

        ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            self.rec.log("world/camera/image/rgb", rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg"))

    def _match_pinhole(self, width: int, height: int) -> None:
        """Images at another resolution than the intrinsics (no camera_info, a decimated stream): scale K, or the
        viewer cannot place the image in its frustum."""
        if self.K is not None and self._pinhole_size != (width, height):
            sx, sy = width / self._pinhole_size[0], height / self._pinhole_size[1]
            self._pinhole(np.diag([sx, sy, 1.0]) @ self.K, width, height)

    def _camera_info(self, msg) -> None:
        K = np.asarray(msg.k, dtype=float).reshape(3, 3)
        if K[0, 0] > 0 and (self.K is None or not np.allclose(K, self.K)):
            self._pinhole(K, int(msg.width), int(msg.height))

    def _depth(self, msg) -> None:
        depth = depth_mm(image_array(msg), str(msg.encoding))
        self._match_pinhole(depth.shape[1], depth.shape[0])
        self.rec.log("world/camera/image/depth", rr.DepthImage(depth, meter=1000.0))
        if self.K is None or self.calibration is None:
            return
        points, colors = self.point_cloud(depth, self.K, self.calibration.T_parent_camera, self._latest_rgb,
                                          self.rates.cloud_stride)
        self.rec.log("world/points", rr.Points3D(points, colors=colors, radii=0.002))

    @staticmethod
    def point_cloud(depth_mm_img: np.ndarray, K: np.ndarray, T_base_camera: np.ndarray, rgb: np.ndarray | None,
                    stride: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3) base-frame points of the valid depth pixels on a ``stride`` grid, and their RGB colours.

        Pinhole back-projection: p_cam = z [(u - cx)/fx, (v - cy)/fy, 1], then p_base = R p_cam + t."""
        d = depth_mm_img[::stride, ::stride]
        v, u = np.mgrid[0:depth_mm_img.shape[0]:stride, 0:depth_mm_img.shape[1]:stride]
        valid = d > 0
        z = d[valid].astype(np.float32) * 1e-3
        x = (u[valid] - K[0, 2]) / K[0, 0] * z
        y = (v[valid] - K[1, 2]) / K[1, 1] * z
        p_cam = np.stack([x, y, z], axis=1)
        points = p_cam @ T_base_camera[:3, :3].T + T_base_camera[:3, 3]
        colors = None
        if rgb is not None and rgb.shape[:2] == depth_mm_img.shape:
            colors = rgb[::stride, ::stride][valid]
        return points.astype(np.float32), colors

    def _pose_robot(self, names, positions, static: bool = False) -> None:
        for link, T in self.robot.link_poses(names, positions).items():
            self.rec.log(["world", "robot", link], _transform(T), static=static)

    def _joint_states(self, msg) -> None:
        names, q = list(msg.name), np.asarray(msg.position, dtype=float)
        if len(names) != len(q):
            return
        self._pose_robot(names, q)
        for name, value in zip(names, q):
            self.rec.log(["joints", name, "measured"], rr.Scalars(float(value)))

    def _series(self, names, values, kind: str) -> None:
        for name, value in zip(names, values):
            self.rec.log(["joints", name, kind], rr.Scalars(float(value)))

    def _trajectory(self, msg, kind: str) -> None:
        if len(msg.points):
            self._series(list(msg.joint_names), np.asarray(msg.points[-1].positions, dtype=float), kind)

    def _hand_command(self, msg, kind: str) -> None:
        names = list(getattr(msg, "name", []) or self.description.hand_joints)
        values = np.asarray(getattr(msg, "position", None) if hasattr(msg, "position") else msg.data, dtype=float)
        if len(values) == len(names):
            self._series(names, values, kind)

    def _keypoints(self, msg) -> None:
        if not len(msg.poses):  # "no hand": clear rather than leave a stale hand in the view
            self.rec.log("world/hand/keypoints", rr.Clear(recursive=False))
            self.rec.log("world/hand/skeleton", rr.Clear(recursive=False))
            return
        p = np.array([[q.position.x, q.position.y, q.position.z] for q in msg.poses])
        if p.shape != (21, 3):
            return
        colors = np.full((21, 3), 255, dtype=np.uint8)
        strips, strip_colors = [], []
        for finger, idx in FINGERS.items():
            colors[list(idx)] = FINGER_COLORS[finger]
            strips.append(p[[WRIST, *idx]])
            strip_colors.append(FINGER_COLORS[finger])
        self.rec.log("world/hand/keypoints", rr.Points3D(p, colors=colors, radii=0.006))
        self.rec.log("world/hand/skeleton", rr.LineStrips3D(strips, colors=strip_colors, radii=0.003))

    def _wrist(self, msg) -> None:
        self.rec.log("world/hand/wrist", _transform(pose_matrix(msg.pose)))
        self.rec.log("world/hand/wrist", rr.TransformAxes3D(0.06))

    def _object(self, msg, path: str) -> None:
        self.rec.log(path, _transform(pose_matrix(msg.pose)))

    def _diagnostics(self, msg) -> None:
        for status in msg.status:
            level, message, name = _level(status.level), str(status.message), str(status.name)
            values = {str(kv.key): str(kv.value) for kv in status.values}
            if "interventions_total" in values:
                self._safety(values, level, message)
            elif self._status_seen.get(name, (0, ""))[0] != level and level > 0:
                self.rec.log("events/nodes", rr.TextLog(f"{name}: {message}", level=_LEVELS.get(level, "INFO")))
            self._status_seen[name] = (level, message)

    def _safety(self, values: dict[str, str], level: int, message: str) -> None:
        try:
            total = int(values["interventions_total"])
        except ValueError:
            return
        self.rec.log("safety/interventions_total", rr.Scalars(total))
        counts = {k[6:-1]: int(v) for k, v in values.items() if k.startswith("count[") and v.isdigit()}
        new = {reason: n - self._intervention_counts.get(reason, 0) for reason, n in counts.items()
               if n > self._intervention_counts.get(reason, 0)}
        if self._interventions_total is not None and total > self._interventions_total and new:
            text = ", ".join(f"{reason} +{n}" for reason, n in sorted(new.items()))
            self.rec.log("events/safety", rr.TextLog(f"interventions: {text}", level="WARN"))
        last = self._status_seen.get("safety_monitor")
        if level >= 2 and (last is None or last != (level, message)):
            self.rec.log("events/safety", rr.TextLog(message, level="ERROR"))
        self._interventions_total, self._intervention_counts = total, counts
        self._status_seen["safety_monitor"] = (level, message)


_LEVELS = {0: "INFO", 1: "WARN", 2: "ERROR", 3: "WARN"}
