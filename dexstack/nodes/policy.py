"""policy: runs a policy bundle (policies/<name>/) at its control rate and sends its actions to the safety monitor.

Inputs: ``/joint_states`` (every arm and hand joint; separate arm/hand messages are fine), and when the active
policy's observation asks for them ``/dexstack/object_pose`` (geometry_msgs/PoseStamped, robot base frame) and
``/dexstack/hand_keypoints`` (geometry_msgs/PoseArray, 21 points). The reference trajectory is the bundle's or the
``reference`` parameter's (policies/references/<name>.npz). A ``grasp`` policy's reference is a grasp target: it
also takes ``/dexstack/grasp/target`` (std_msgs/String, the grasp_target node's JSON), each new one set as the
``reference`` parameter, so validated like a swap.

Outputs, once per control period: ``/dexstack/arm/command`` (trajectory_msgs/JointTrajectory: one point, the
position target, ``time_from_start`` = one control period) and ``/dexstack/hand/command``
(std_msgs/Float64MultiArray, profile hand-joint order), for the parts the policy commands. Nothing is sent while
``enabled`` is false, the joint state is stale, or an input the policy needs is missing: the safety monitor's
watchdog then holds the robot.

Swapping: setting ``policy`` (or ``reference``/``device``) loads and validates the new bundle on a loader thread,
never on the control thread (which keeps stepping the running policy); the parameter callback waits for the result.
A bad bundle **refuses the parameter set with the reason** (``ros2 param set`` prints it) and the running policy
keeps running; a good one takes over at the next step boundary. The control loop runs on its own thread, paced
by the monotonic clock, so parameter calls and subscriptions never delay a step.

Services: ``~/list`` and ``~/describe`` (std_srvs/Trigger, JSON in ``message``): bundles, references and types;
the active policy. ``~/restart`` (Trigger): play the reference again from its start.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseArray, PoseStamped, PoseWithCovarianceStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexstack.diagnostics import Level, ReasonCounter, StatusReport
from dexstack.nodes import common
from dexstack.nodes.safety_link import SafetyLink
from dexstack.perception.pose_keeper import STALE_POSITION_STD_M
from dexstack.policies import (
    InputCache,
    Policy,
    PolicyError,
    PolicyRuntime,
    list_bundles,
    list_references,
    load_manifest,
    policy_types,
)
from dexstack.policies.bundles import load_bundle_manifest
from dexstack.policies.registry import check_device
from dexstack.robot.description import load_description

OBJECT_POSE_TOPIC = "dexstack/object_pose"
OBJECT_POSE_COV_TOPIC = "dexstack/object_pose_with_covariance"  # object_pose's same pose with its covariance
KEYPOINTS_TOPIC = "dexstack/hand_keypoints"
GRASP_TARGET_TOPIC = "dexstack/grasp/target"  # std_msgs/String, JSON (grasp_target node), for 'grasp' policies
ARM_COMMAND_TOPIC = "dexstack/arm/command"  # the safety monitor's inputs
HAND_COMMAND_TOPIC = "dexstack/hand/command"


def _device_error(value: str) -> str | None:
    try:
        check_device(value)
    except PolicyError as exc:
        return str(exc)
    return None


@dataclass
class Params:
    robot_profile: str = common.param("panda_allegro", "Robot profile (config/robots/<name>.yaml).", read_only=True)
    policy: str = common.param("", "Policy bundle: a name in policies/ (or $DEXSTACK_POLICY_PATH) or a folder path. "
                                   "Empty: no policy (nothing is sent). Changing it swaps at a step boundary; a "
                                   "bad bundle is refused with the reason and the running policy keeps running.")
    reference: str = common.param("", "Reference trajectory (policies/references/<name>.npz or a path); empty: the "
                                      "bundle's own. A 'grasp' policy's: a grasp target (file or JSON text).")
    enabled: bool = common.param(True, "Send commands. Re-enabling restarts the reference from its beginning.")
    rate_hz: float = common.param(0.0, "Control rate; 0 = the bundle's control_rate_hz.", min=0.0, max=500.0)
    device: str = common.param("cpu", "Torch device for network policies (cpu, cuda, cuda:1).",
                               validate=_device_error)
    state_timeout_s: float = common.param(0.2, "/joint_states older than this: nothing is sent.", min=0.01, max=5.0)
    object_pose_timeout_s: float = common.param(
        0.5, "Object pose / hand keypoints older than this are missing (a policy that needs them sends nothing); "
             "rides through short perception dropouts, e.g. while the hand occludes the object.", min=0.01, max=5.0)
    object_pose_max_std_m: float = common.param(
        0.03, "An object pose whose covariance (dexstack/object_pose_with_covariance, the same stamp and position) "
              "gives a position std above this is not used (object_pose's prediction kept too long): the policy "
              "then sends nothing, as without a pose, and the safety monitor holds. 0: covariances ignored.",
        min=0.0, max=1.0)
    load_timeout_s: float = common.param(30.0, "Longest wait for a bundle to load.", min=1.0, max=600.0)
    torch_threads: int = common.param(1, "Threads of torch inference (1 keeps the other cores for the graph).",
                                      read_only=True, min=1, max=64)
    diagnostics_rate_hz: float = common.param(1.0, "Rate of /diagnostics.", min=0.1, max=10.0)
    wait_for_safety: bool = common.param(True, "Send only while the safety monitor reports ready.", read_only=True)
    # vgps policies (dexstack/policies/vgps.py): live overrides of the bundle's params; "" / 0 / -1 = the bundle's
    vgps_base_policy: str = common.param("", "vgps: the stochastic bundle to re-rank (empty: the bundle's).")
    vgps_critic: str = common.param("", "vgps: critic bundle (empty: the bundle's); an incompatible one is refused.")
    vgps_num_samples: int = common.param(0, "vgps: K candidates per step (0: the bundle's).", min=0, max=1024)
    vgps_temperature: float = common.param(-1.0, "vgps: softmax temperature over Q, 0 = argmax (-1: the bundle's).",
                                           validate=lambda v: None if v == -1.0 or 0.0 <= v < float("inf") else
                                           f"vgps_temperature must be >= 0 (or -1 for the bundle's), got {v}")
    vgps_margin: float = common.param(-1.0, "vgps: execute the argmax only if its Q beats the mean action's by more "
                                            "than this (Q units, 0 = plain argmax; -1: the bundle's).",
                                      validate=lambda v: None if v == -1.0 or 0.0 <= v < float("inf") else
                                      f"vgps_margin must be a finite number >= 0 (or -1 for the bundle's), got {v}")


def _vgps_overrides(p: Params) -> dict:
    """The vgps_* parameters that override a vgps bundle's params (none for other policy types)."""
    try:
        if not p.policy or load_bundle_manifest(p.policy).type != "vgps":
            return {}
    except PolicyError:
        return {}  # the load itself reports the problem
    values = {"base_policy": p.vgps_base_policy or None, "critic": p.vgps_critic or None,
              "num_samples": p.vgps_num_samples or None, "temperature": None if p.vgps_temperature == -1.0
              else p.vgps_temperature, "margin": None if p.vgps_margin == -1.0 else p.vgps_margin}
    return {k: v for k, v in values.items() if v is not None}


TWIN_RECENT_S = 1.0  # a source that sent a covariance twin this recently sends one for every pose


def _pose_key(stamp, position) -> tuple:
    """What identifies one object pose across its PoseStamped and PoseWithCovarianceStamped twins."""
    return (stamp.sec, stamp.nanosec, position.x, position.y, position.z)


def _duration(t_s: float) -> Duration:
    return Duration(sec=int(t_s), nanosec=int(round((t_s - int(t_s)) * 1e9)))


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy")
        self._loaded_key: tuple[str, str, str] | None = None  # (policy, reference, device) of the staged policy
        self._pending: tuple[tuple[str, str, str], Policy | None] | None = None
        self.runtime: PolicyRuntime | None = None
        self.description = None
        self.params = common.declare_params(self, Params, self._on_change, self._validate)  # loads the policy
        torch.set_num_threads(self.params.torch_threads)
        self.runtime.rate_override_hz = self.params.rate_hz
        self.inputs = InputCache(self.description.joints)
        self.errors = ReasonCounter()
        self.rejected = ReasonCounter()
        self.rate = common.RateMeter(window_s=3.0)
        self._step_ms: list[float] = []
        self._max_gap_s = 0.0
        self._was_enabled = self.params.enabled

        # relative names: remap them the ROS 2 way (launch <remap>, --ros-args -r arm_command:=...)
        self.arm_pub = self.create_publisher(JointTrajectory, ARM_COMMAND_TOPIC, common.COMMAND_QOS)
        self.hand_pub = self.create_publisher(Float64MultiArray, HAND_COMMAND_TOPIC, common.COMMAND_QOS)
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, common.STATE_QOS)
        self._object_sub = self._keypoints_sub = self._grasp_sub = self._object_cov_sub = None
        self._pose_std: dict[tuple, float] = {}  # (stamp ns, x, y, z) -> position std (m), recent poses
        self._pending_poses: dict[tuple, np.ndarray] = {}  # poses waiting for their covariance twin
        # When a covariance twin last matched one of our poses (control time): only then does the pose source send
        # twins. Twins of other poses (perception running beside a remap of this input to another source) do not
        # count, or every pose of that source would wait for a twin that never comes.
        self._last_twin_match_s = -float("inf")
        self._used_pose_keys: dict = {}  # recent poses used without a twin (a later twin still matches them)
        self.uncertain_poses = ReasonCounter()  # object poses not used: too uncertain
        self.stale_poses_used = 0  # object poses used although marked stale (std >= STALE_POSITION_STD_M)
        self.safety = SafetyLink(self) if self.params.wait_for_safety else None
        self._stage_pending()
        self.create_service(Trigger, "~/list", self._on_list)
        self.create_service(Trigger, "~/describe", self._on_describe)
        self.create_service(Trigger, "~/restart", self._on_restart)
        common.live_rate_timer(self, "diagnostics_rate_hz", self.params.diagnostics_rate_hz,
                               self._publish_diagnostics)

        self._stop = threading.Event()
        self.context.on_shutdown(self._stop.set)
        self._thread = threading.Thread(target=self._control_loop, name="policy-control", daemon=True)
        self._thread.start()
        self.get_logger().info(f"policy node up: '{self.params.policy or '(none)'}' -> {self.arm_pub.topic_name}, "
                               f"{self.hand_pub.topic_name}")

    # ------------------------------------------------------------------ parameters (executor thread)
    def _validate(self, candidate: Params) -> str | None:
        """Runs before a parameter set is accepted (and at startup): loads a changed policy off the control thread."""
        if self.description is None:  # startup: the robot first
            self.description = load_description(candidate.robot_profile)
            self.runtime = PolicyRuntime(self.description, candidate.device)
        overrides = _vgps_overrides(candidate)
        key = (candidate.policy, candidate.reference, candidate.device, tuple(sorted(overrides.items())))
        if key == self._loaded_key:
            return None
        if not candidate.policy:
            self._pending = (key, None)
            return None
        t0 = time.monotonic()
        try:
            policy = self.runtime.load(candidate.policy, candidate.reference or None, candidate.device,
                                       timeout_s=candidate.load_timeout_s, params=overrides or None)
        except PolicyError as exc:
            reason = f"policy '{candidate.policy}' rejected, keeping '{self.params_policy_name()}': {exc}"
            if hasattr(self, "rejected"):  # not at startup, where the node exits with the reason
                self.rejected.add(str(exc)[:300])
            return reason
        self._pending = (key, policy)
        self.get_logger().info(f"loaded policy '{policy.name}' ({policy.manifest.type}, "
                               f"{policy.manifest.control_rate_hz:g} Hz) in {1000 * (time.monotonic() - t0):.0f} ms")
        return None

    def params_policy_name(self) -> str:
        active = self.runtime.active if self.runtime is not None else None
        return active.name if active is not None else "(none)"

    def _stage_pending(self) -> None:
        if self._pending is None:
            return
        key, policy = self._pending
        self._pending = None
        self._loaded_key = key
        self._ensure_inputs(policy)
        self.runtime.stage(policy)

    def _on_change(self, name: str, value) -> None:
        if name in ("policy", "reference", "device") or name.startswith("vgps_"):
            self._stage_pending()
        elif name == "rate_hz":
            self.runtime.rate_override_hz = float(value)
        elif name == "enabled" and value and not self._was_enabled:
            self.runtime.restart()
        if name == "enabled":
            self._was_enabled = bool(value)

    def _ensure_inputs(self, policy: Policy | None) -> None:
        """Subscribe to the object pose / keypoints only when a policy asks for them."""
        if policy is None:
            return
        if "object_pose" in policy.needs and self._object_sub is None:
            self._object_sub = self.create_subscription(PoseStamped, OBJECT_POSE_TOPIC, self._on_object,
                                                        common.STATE_QOS)
            self._object_cov_sub = self.create_subscription(PoseWithCovarianceStamped, OBJECT_POSE_COV_TOPIC,
                                                            self._on_object_covariance, common.STATE_QOS)
        if "hand_keypoints" in policy.needs and self._keypoints_sub is None:
            self._keypoints_sub = self.create_subscription(PoseArray, KEYPOINTS_TOPIC, self._on_keypoints,
                                                           common.SENSOR_QOS)
        if "grasp_target" in policy.needs and self._grasp_sub is None:
            self._grasp_sub = self.create_subscription(String, GRASP_TARGET_TOPIC, self._on_grasp_target,
                                                       common.LATCHED_QOS)

    def _on_grasp_target(self, msg: String) -> None:
        """A new grasp target (JSON, from grasp_target) becomes the ``reference`` parameter: validated exactly as a
        parameter set (planned on the loader thread; a bad or unreachable target is refused, the old one kept)."""
        if msg.data == self.params.reference:
            return
        result = self.set_parameters([Parameter("reference", value=msg.data)])[0]
        if result.successful:
            self.get_logger().info("new grasp target accepted")
        else:
            self.errors.add(f"grasp target refused: {result.reason[:300]}")
            self.get_logger().warning(f"grasp target refused: {result.reason}")

    # ------------------------------------------------------------------ inputs (executor thread)
    def _on_joint_state(self, msg: JointState) -> None:
        self.inputs.update_joints(msg.name, msg.position, msg.velocity, common.control_time_s(self))

    def _on_object(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        key = _pose_key(msg.header.stamp, p)
        pose = np.array([p.x, p.y, p.z, o.x, o.y, o.z, o.w])
        std = self._pose_std.get(key)
        if std is not None and self._too_uncertain(std):
            return
        now = common.control_time_s(self)
        if std is not None:
            self._last_twin_match_s = now
        elif self.params.object_pose_max_std_m > 0 and now - self._last_twin_match_s < TWIN_RECENT_S:
            # The source sends covariance twins: wait for this pose's twin before using it (a control tick between
            # the two would otherwise act once on a pose that turns out too uncertain).
            self._pending_poses[key] = pose
            while len(self._pending_poses) > 8:
                del self._pending_poses[next(iter(self._pending_poses))]
            return
        if std is None:
            self._used_pose_keys[key] = True
            while len(self._used_pose_keys) > 8:
                del self._used_pose_keys[next(iter(self._used_pose_keys))]
        self.inputs.update_object(pose, now, key)

    def _on_object_covariance(self, msg: PoseWithCovarianceStamped) -> None:
        """The covariance of a pose on OBJECT_POSE_TOPIC (matched by stamp and position, so poses from another
        source, e.g. a remap to the simulator's, are never matched, and such a source's poses never wait for one):
        a too uncertain one is dropped, whichever of the two messages arrives first."""
        c = msg.pose.covariance
        std = float(np.sqrt(max(c[0], c[7], c[14], 0.0)))
        key = _pose_key(msg.header.stamp, msg.pose.pose.position)
        self._pose_std[key] = std
        now = common.control_time_s(self)
        while len(self._pose_std) > 64:
            del self._pose_std[next(iter(self._pose_std))]
        pending = self._pending_poses.pop(key, None)
        if pending is not None or self._used_pose_keys.pop(key, False):
            self._last_twin_match_s = now
        if pending is not None and not self._too_uncertain(std):
            self.inputs.update_object(pending, now, key)
        if self._too_uncertain(std):
            self.uncertain_poses.add(f"object pose std {100 * std:.1f} cm > "
                                     f"{100 * self.params.object_pose_max_std_m:.1f} cm")
            self.inputs.drop_object(key)
        elif std >= STALE_POSITION_STD_M:
            self.stale_poses_used += 1

    def _too_uncertain(self, std_m: float) -> bool:
        limit = self.params.object_pose_max_std_m
        return limit > 0 and std_m > limit

    def _on_keypoints(self, msg: PoseArray) -> None:
        points = None if not msg.poses else common.points_from_pose_array(msg)
        if points is not None and points.shape != (21, 3):
            self.errors.add(f"hand keypoints: {len(msg.poses)} points, expected 21")
            points = None
        self.inputs.update_keypoints(points, common.control_time_s(self))

    # ------------------------------------------------------------------ control thread
    def _control_loop(self) -> None:
        common.name_native_thread("policy-control")
        try:
            self._run_control()
        except Exception:  # a publish racing shutdown is fine; anything else is a bug worth a traceback
            if rclpy.ok(context=self.context):
                raise

    def _run_control(self) -> None:
        next_t = common.control_time_s(self)
        last_send = None
        while not self._stop.is_set():
            now = common.control_time_s(self)
            if now < next_t:
                self._stop.wait(max(next_t - now, 0.0005))  # with sim time: re-checked against /clock
                continue
            sent = self._step(now)
            if sent:
                if last_send is not None:
                    self._max_gap_s = max(self._max_gap_s, now - last_send)
                last_send = now
            period = self.runtime.period_s  # after the step: a swap may have changed the rate
            next_t += period
            late_now = common.control_time_s(self)
            if next_t < late_now - period:  # fell behind by more than a period: do not burst to catch up
                next_t = late_now

    def _step(self, now: float) -> bool:
        if not self.params.enabled:
            return False
        state = self.inputs.state(now, self.params.state_timeout_s, self.params.object_pose_timeout_s)
        if state is None:
            if self.runtime.active is not None:
                self.errors.add("no fresh /joint_states")
            return False
        if self.safety is not None and not self.safety.ready:  # the reference starts once commands are taken
            if self.runtime.active is not None:
                self.errors.add("waiting for the safety monitor to be ready")
            return False
        t0 = time.perf_counter()
        try:
            targets = self.runtime.step(state, now)
        except PolicyError as exc:
            self.errors.add(str(exc))
            self.get_logger().warning(f"no command this step: {exc}", throttle_duration_sec=2.0)
            return False
        except Exception as exc:  # noqa: BLE001  a bug in a policy must not kill the control thread; the robot holds
            self.errors.add(f"{type(exc).__name__}: {exc}")
            self.get_logger().error(f"policy step failed: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)
            return False
        if targets is None:
            return False
        period = self.runtime.period_s
        if targets.arm is not None:
            traj = JointTrajectory(joint_names=list(self.description.arm_joints))
            traj.points.append(JointTrajectoryPoint(positions=targets.arm.tolist(), time_from_start=_duration(period)))
            self.arm_pub.publish(traj)
        if targets.hand is not None:
            self.hand_pub.publish(Float64MultiArray(data=targets.hand.tolist()))
        self._step_ms.append(1000.0 * (time.perf_counter() - t0))
        del self._step_ms[:-200]
        self.rate.tick(now)
        return True

    # ------------------------------------------------------------------ services, diagnostics
    def _on_list(self, _request, response):
        bundles = {}
        for name, path in list_bundles().items():
            try:
                manifest = load_manifest(path)
                bundles[name] = {"type": manifest.type, "robot_profile": manifest.robot_profile,
                                 "control_rate_hz": manifest.control_rate_hz, "description": manifest.description,
                                 "path": str(path)}
            except PolicyError as exc:
                bundles[name] = {"error": str(exc), "path": str(path)}
        response.success = True
        response.message = json.dumps({"bundles": bundles, "references": sorted(list_references()),
                                       "types": sorted(policy_types())})
        return response

    def _on_describe(self, _request, response):
        policy = self.runtime.active
        response.success = policy is not None
        info = {"active": None if policy is None else policy.manifest.summary(),
                "reference": None if policy is None or policy.reference is None else {
                    "name": policy.reference.name, "kind": policy.reference.kind,
                    "duration_s": policy.reference.duration_s},
                "episode_time_s": self.runtime.episode_time_s(common.control_time_s(self)),
                "enabled": self.params.enabled, "rate_hz": 1.0 / self.runtime.period_s, "swaps": self.runtime.swaps,
                "rejected": self.rejected.total, "last_rejection": self.rejected.last_reason}
        response.message = json.dumps(info)
        return response

    def _on_restart(self, _request, response):
        self.runtime.restart()
        response.success = True
        response.message = "the reference restarts at the next step"
        return response

    def _publish_diagnostics(self) -> None:
        policy = self.runtime.active
        rate = self.rate.rate_hz()
        nominal = 1.0 / self.runtime.period_s
        step_ms = np.array(self._step_ms) if self._step_ms else np.zeros(1)
        if policy is None:
            level, message = Level.WARN, "no policy"
        elif not self.params.enabled:
            level, message = Level.OK, f"'{policy.name}' disabled"
        elif rate < 0.8 * nominal:
            level, message = Level.WARN, f"'{policy.name}' at {rate:.1f} Hz, below {nominal:.1f} Hz"
            if self.errors.last_reason:
                message += f"; last problem: {self.errors.last_reason}"
        else:
            level, message = Level.OK, f"'{policy.name}' running"
        values = {"policy": policy.name if policy else "", "type": policy.manifest.type if policy else "",
                  "rate_hz": f"{rate:.1f}", "nominal_rate_hz": f"{nominal:.1f}",
                  "step_ms_p50": f"{np.percentile(step_ms, 50):.3f}", "step_ms_max": f"{step_ms.max():.3f}",
                  "max_send_gap_ms": f"{1000 * self._max_gap_s:.1f}", "swaps": str(self.runtime.swaps),
                  "rejected_bundles": str(self.rejected.total), "last_rejection": self.rejected.last_reason,
                  "skipped_steps": str(self.errors.total), "last_skip_reason": self.errors.last_reason,
                  "object_poses_too_uncertain": str(self.uncertain_poses.total),
                  "object_poses_stale_used": str(self.stale_poses_used),
                  **(policy.diagnostics() if policy else {})}
        values.update({f"policy_{k}": v for k, v in getattr(policy, "status", {}).items()})  # e.g. anchoring, hold
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("policy", level, message, values)]))
        self._max_gap_s = 0.0  # per diagnostics period

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        if self.runtime is not None:
            self.runtime.close()


def main(args: list[str] | None = None) -> None:
    common.run_node(PolicyNode, args)


if __name__ == "__main__":
    main()
