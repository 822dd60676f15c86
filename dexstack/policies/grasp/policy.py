"""Policy type ``grasp`` (FunGrasp): a grasp target -> a planned grasp episode -> the network's residuals around it.

The type's *reference* (the manifest's ``reference`` or the ``policy`` node's ``reference`` parameter) is a grasp
target: a file written by ``dexstack-grasp-target --out`` (YAML/JSON) or its JSON text as the ``grasp_target`` node
publishes it on ``dexstack/grasp/target``. Loading it (on the node's loader thread, like a bundle swap) plans the
episode (:func:`dexstack.grasp.episode.plan_grasp`: pre-grasp, approach, close, lift 10 cm, hold; arm IK and the
gate's collision check at the target's object pose); a malformed, unreachable or colliding target, or one made for
other links than the policy was trained on, is a :class:`PolicyError` naming the cause: the node refuses it and
keeps what runs.

Run: the first step re-starts the reach from the measured joints, and checks the measured object pose against the
one the target was made at (beyond ``max_object_shift_m`` / ``max_object_turn_rad`` nothing is sent, with the
reason, until a new target); the reach to the pre-grasp plays the reference (the network was trained from the
pre-grasp on); from the pre-grasp on, the network (the DAgger student: no tactile input, its last ``history``
observations) adds residuals; after the episode the last targets are held (the object stays in the hand). Without
a target the policy waits and sends nothing.

Observation fields it adds (same maths as the batched :mod:`dexstack.policies.grasp.task`; palm and link poses from
pinocchio forward kinematics of the measured joints): ``grasp_palm``, ``grasp_links``, ``grasp_contact_mask``;
``link_contact_force`` (the teacher's privileged input) is refused: no tactile sensing on the robot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from dexstack.grasp.frame_choice import symmetric_turn, turned_pose
from dexstack.policies.action import ActionMapper, JointTargets
from dexstack.policies.builtin import NetworkPolicy
from dexstack.policies.checkpoints import load_network
from dexstack.policies.errors import PolicyError
from dexstack.policies.observation import ObservationBuilder, StepContext, register_field
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.registry import register_policy
from dexstack.transforms import invert_transform, matrix_to_quat_xyzw, pose_to_transform, quat_angle_rad

TARGET_KEY = "grasp_target"  # ReferenceTrajectory.metadata key of the target's plain data


def default_link_names(description) -> tuple[str, ...]:
    """The links a grasp target constrains: the retargeting config's keypoint links (wrist excluded), in order
    (:class:`dexstack.retarget.functional.FunctionalRetargeter`'s ``link_names``)."""
    from dexstack.retarget.config import load_retarget_config  # noqa: PLC0415

    config = load_retarget_config("allegro_right", "vector")
    links = [link for k, link in enumerate(config.keypoint_links) if link is not None and k != 0]
    return tuple(dict.fromkeys(links))


@dataclass
class GraspInput:
    """What the grasp fields need at a step: the target, the measured palm pose and link positions (base frame)."""

    T_object_palm: np.ndarray
    link_positions_object_m: np.ndarray  # (L, 3)
    contact_mask: np.ndarray  # (L,)
    T_base_palm: np.ndarray
    links_base_m: np.ndarray  # (L, 3)


def _grasp(ctx: StepContext) -> GraspInput:
    g = ctx.info.get("grasp")
    if g is None:
        raise PolicyError("the observation needs a grasp target (policy type 'grasp')")
    return g


def _object_T(ctx: StepContext) -> np.ndarray:
    pose = ctx.state.object_pose
    if pose is None:
        raise PolicyError("the observation needs the object pose, and none was received")
    return pose_to_transform(pose[:3], np.asarray(pose[3:]) / np.linalg.norm(pose[3:]))


def _grasp_palm(ctx: StepContext, f) -> np.ndarray:
    g = _grasp(ctx)
    rel = invert_transform(g.T_base_palm) @ _object_T(ctx) @ g.T_object_palm
    q = matrix_to_quat_xyzw(rel[:3, :3])
    return np.concatenate([rel[:3, 3], q if q[3] >= 0 else -q])


def _grasp_links(ctx: StepContext, f) -> np.ndarray:
    g = _grasp(ctx)
    T = _object_T(ctx)
    target_base = g.link_positions_object_m @ T[:3, :3].T + T[:3, 3]
    return ((target_base - g.links_base_m) @ g.T_base_palm[:3, :3]).reshape(-1)


def _no_tactile(ctx: StepContext, f) -> np.ndarray:
    raise PolicyError("observation field 'link_contact_force' is the grasp teacher's privileged input (per-link "
                      "contact forces from the simulator): the robot has no tactile sensing; deploy the student")


def _links_size(f, d, m) -> int:
    return 3 * len(m.params.get("links") or default_link_names(d))


def _mask_size(f, d, m) -> int:
    return len(m.params.get("links") or default_link_names(d))


register_field("grasp_palm", _grasp_palm, lambda *_: 7, ("object_pose",))
register_field("grasp_links", _grasp_links, _links_size, ("object_pose",))
register_field("grasp_contact_mask", lambda c, f: _grasp(c).contact_mask.astype(float), _mask_size)
register_field("link_contact_force", _no_tactile, _mask_size)


class _Kinematics:
    """Palm pose (arm FK) and link positions (hand FK) of measured joints, base frame."""

    def __init__(self, description, links: tuple[str, ...]):
        from dexstack.retarget.arm import ArmIK  # noqa: PLC0415
        from dexstack.retarget.hand_model import HandModel  # noqa: PLC0415

        self.arm = ArmIK(description)
        self.hand = HandModel(description)
        self.links = links
        self.n_arm = len(description.arm_joints)
        for link in links:
            self.hand.frame_id(link)  # ValueError naming the known links

    def __call__(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        T = self.arm.forward(q[: self.n_arm])
        p = self.hand.link_positions(q[self.n_arm:], self.links)
        return T, p @ T[:3, :3].T + T[:3, 3]


@register_policy("grasp")
class GraspPolicy(NetworkPolicy):
    max_object_shift_m = 0.03
    max_object_turn_rad = 0.3
    max_object_prediction_s = 3.0

    def __init__(self, manifest, description, reference, network):
        if manifest.action.mode != "residual":
            raise PolicyError("grasp policies output residuals around the planned grasp: set action.mode: residual")
        self.history = int(manifest.params.get("history", 1))
        self.link_names = tuple(manifest.params.get("links") or default_link_names(description))
        super().__init__(manifest, description, reference, network)
        try:
            self.kinematics = _Kinematics(description, self.link_names)
        except ValueError as exc:
            raise PolicyError(f"grasp policy links: {exc}") from None
        self.planned_reference = reference
        self.target = self.T_base_object = None
        if reference is not None:
            from dexstack.grasp.target_io import target_from_dict  # noqa: PLC0415

            self.target, self.T_base_object = target_from_dict(reference.metadata[TARGET_KEY],
                                                               len(description.hand_joints))
        self._reset_run()

    def require_reference(self):  # the grasp target may come later: without one the policy waits
        return self.reference

    @property
    def needs(self) -> set[str]:
        return super().needs | {"grasp_target"}

    @classmethod
    def from_manifest(cls, manifest, description, device, reference):
        if manifest.checkpoint is None:
            raise PolicyError("a 'grasp' policy needs a checkpoint")
        history = int(manifest.params.get("history", 1))
        if history < 1:
            raise PolicyError(f"params.history must be >= 1, got {history}")
        obs = ObservationBuilder(manifest, description)  # checks the layout before reading any weights
        action = ActionMapper(manifest.action, description)
        network = load_network(manifest.checkpoint_path(), manifest.checkpoint, obs.size * history, action.size,
                               manifest.action.clip, device)
        return cls(manifest, description, reference, network)

    @classmethod
    def resolve_reference(cls, name, manifest, description) -> ReferenceTrajectory:
        """Plan the grasp of a target (file or JSON text) at the object pose it was made at, from the home pose
        (the reach restarts from the measured joints when the policy runs)."""
        from dexstack.grasp.baseline import UnreachableError  # noqa: PLC0415
        from dexstack.grasp.episode import plan_grasp  # noqa: PLC0415
        from dexstack.grasp.target_io import GraspTargetError, read_target, target_from_dict  # noqa: PLC0415
        from dexstack.retarget.arm import ArmIK, ArmIKConfig  # noqa: PLC0415
        from dexstack.safety.gate import SafetyGate, load_safety_config  # noqa: PLC0415

        try:
            data = read_target(name)
            target, T_base_object = target_from_dict(data, len(description.hand_joints))
        except GraspTargetError as exc:
            raise PolicyError(str(exc)) from None
        links = tuple(manifest.params.get("links") or default_link_names(description))
        if target.link_names != links:
            raise PolicyError(f"the grasp target constrains links {list(target.link_names)}, the policy was trained "
                              f"on {list(links)}")
        if T_base_object is None:
            raise PolicyError("the grasp target has no T_base_object (the object's pose when it was made): make it "
                              "from a frame (dexstack-grasp-target, the grasp_target node)")
        gate = SafetyGate(description, load_safety_config())
        try:
            plan = plan_grasp(target, T_base_object, description.home(),
                              ArmIK(description, ArmIKConfig(max_iterations=200, posture_weight=1e-4)), description,
                              collision_m=lambda qa, qh: gate.collision_violation_m(np.concatenate((qa, qh))))
        except UnreachableError as exc:
            raise PolicyError(f"grasp target for '{target.object_name}' refused: {exc}") from None
        digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
        ref = plan.reference
        return ReferenceTrajectory(ref.times_s, ref.q_rad, ref.object_pose, name=f"grasp_{target.object_name}_{digest}",
                                   kind="grasp", robot_profile=description.profile.name,
                                   metadata={TARGET_KEY: data, "t_pregrasp_s": float(ref.times_s[1]),
                                             "t_lift_s": float(ref.times_s[3])})

    # ------------------------------------------------------------------ run
    def _reset_run(self) -> None:
        self.reference = self.planned_reference
        self._anchored, self._refusal, self._hold = False, None, None
        self._frame_turn = None  # object frame: the tracker's -> the target's (a symmetry of the shape), or None
        self._history: list[np.ndarray] = []
        self._last_object: tuple[np.ndarray, np.ndarray, float] | None = None  # (pose, T_base_palm, t_s)
        self.status = {"phase": "waiting for a grasp target" if self.target is None else "starting"}

    def reset(self, ctx: StepContext) -> None:
        super().reset(ctx)
        self._reset_run()

    def _anchor(self, ctx: StepContext) -> None:
        """First step: the reach starts at the measured joints; the object must be where the target was made."""
        pose = ctx.state.object_pose
        if pose is None:
            raise PolicyError("waiting for the object pose")
        self._anchored = True
        shift = float(np.linalg.norm(np.asarray(pose[:3]) - self.T_base_object[:3, 3]))
        turn = quat_angle_rad(np.asarray(pose[3:]), matrix_to_quat_xyzw(self.T_base_object[:3, :3]))
        if turn > self.max_object_turn_rad:
            # A symmetric object (a can, a cube) fits equally well in several frames: the tracker's may be another
            # than the one the target was made in. When the turn between them is a symmetry of the shape, the
            # tracked poses are expressed in the target's frame from now on (the target is about the object, not
            # about which of its equivalent frames a fit returned).
            from dexstack.perception.objects import ObjectConfigError, load_object_model  # noqa: PLC0415

            try:
                model = load_object_model(self.target.object_name)
            except ObjectConfigError:  # no model to tell a symmetry: the turn stands
                model = None
            T_seen = pose_to_transform(pose[:3], pose[3:])
            self._frame_turn = None if model is None else symmetric_turn(model, T_seen, self.T_base_object)
            if self._frame_turn is not None:
                self.status = {**self.status, "object_frame_turned_deg": f"{np.degrees(turn):.0f}"}
                ctx.state.object_pose = turned_pose(pose, self._frame_turn)
                turn = quat_angle_rad(ctx.state.object_pose[3:], matrix_to_quat_xyzw(self.T_base_object[:3, :3]))
        if shift > self.max_object_shift_m or turn > self.max_object_turn_rad:
            self._refusal = (f"the object is {100 * shift:.1f} cm / {np.degrees(turn):.0f} deg from where the grasp "
                             f"target was made (limits {100 * self.max_object_shift_m:.0f} cm / "
                             f"{np.degrees(self.max_object_turn_rad):.0f} deg): make a new target")
            self.status = {"phase": "refused", "reason": self._refusal}
            return
        ref = self.planned_reference
        q = ref.q_rad.copy()
        q[0] = ctx.state.q
        self.reference = ReferenceTrajectory(ref.times_s, q, ref.object_pose, ref.name, ref.kind, ref.robot_profile,
                                             ref.metadata)
        self.status = {**{k: v for k, v in self.status.items() if k == "object_frame_turned_deg"},
                       "phase": "reach", "object_shift_m": f"{shift:.4f}"}

    def act(self, ctx: StepContext) -> JointTargets | None:
        if self.target is None:
            return None
        if not self._anchored:
            self._anchor(ctx)
        elif self._frame_turn is not None and ctx.state.object_pose is not None:
            ctx.state.object_pose = turned_pose(ctx.state.object_pose, self._frame_turn)
        if self._refusal is not None:
            raise PolicyError(self._refusal)
        ctx.reference = self.reference
        if ctx.t_s >= self.reference.duration_s:
            if self._hold is None:
                n = self.action.n_arm
                last = np.asarray(ctx.last_target, dtype=float)
                self._hold = JointTargets(arm=last[:n].copy(), hand=last[n:].copy())
                self.status = {**self.status, "phase": "holding"}
            return self._hold
        T_base_palm, links_base = self.kinematics(np.asarray(ctx.state.q, dtype=float))
        reach = ctx.t_s < self.reference.metadata["t_pregrasp_s"] - 1e-6
        try:
            self._object_pose(ctx, T_base_palm)
        except PolicyError:
            if not reach:
                raise
        if reach:  # the reach: the reference as it is
            return self.action.targets(np.zeros(self.action.size), ctx)
        if not self._history:
            self.status = {**self.status, "phase": "grasp"}
        ctx.info["grasp"] = GraspInput(self.target.T_object_palm, self.target.link_positions_object_m,
                                       self.target.contact_mask, T_base_palm, links_base)
        ctx.last_action = self._last_action
        obs = self.observation.build(ctx)
        # the last `history` observations, oldest first; a run starts with copies of its first (as in training)
        self._history = self._history[1:] + [obs] if self._history else [obs] * self.history
        raw = self.network(np.concatenate(self._history))
        if not np.all(np.isfinite(raw)):
            raise PolicyError(f"policy '{self.name}' produced non-finite actions")
        self._last_action = raw
        return self.action.targets(raw, ctx)

    def _object_pose(self, ctx: StepContext, T_base_palm: np.ndarray) -> None:
        """The hand hides the object as it closes, and perception may lose it: then the last pose seen is kept,
        moved with the palm once the hand has closed (an object in the hand goes where the palm goes), for at most
        ``max_object_prediction_s``."""
        pose = ctx.state.object_pose
        if pose is not None:
            self._last_object = (np.asarray(pose, dtype=float), T_base_palm, ctx.t_s)
            return
        if self._last_object is None or ctx.t_s - self._last_object[2] > self.max_object_prediction_s:
            raise PolicyError("the object pose is lost (none received)")
        pose, T_palm_then, t_then = self._last_object
        T = pose_to_transform(pose[:3], pose[3:])
        if t_then >= self.reference.metadata["t_lift_s"]:
            T = T_base_palm @ invert_transform(T_palm_then) @ T
        ctx.state.object_pose = np.concatenate([T[:3, 3], matrix_to_quat_xyzw(T[:3, :3])])
        self.status = {**self.status, "object_pose": f"predicted ({ctx.t_s - t_then:.1f} s)"}

    def dry_run(self, ctx: StepContext) -> None:
        """The base check (first step), plus one network step at the pre-grasp when there is a target."""
        super().dry_run(ctx)
        if self.target is None:
            raw = self.network(np.zeros(self.observation.size * self.history))
            if not np.all(np.isfinite(raw)):
                raise PolicyError(f"policy '{self.name}' produced non-finite actions")
            return
        t = float(self.planned_reference.metadata["t_pregrasp_s"])
        state = type(ctx.state)(q=self.planned_reference.q_at(t), dq=np.zeros_like(ctx.state.q),
                                object_pose=self.planned_reference.object_pose_at(0.0))
        probe = StepContext(state=state, t_s=0.0, period_s=ctx.period_s, reference=self.planned_reference,
                            last_target=state.q.copy())
        self.reset(probe)
        probe.t_s = t
        out = self.act(probe)
        if out is None or not (np.all(np.isfinite(out.arm)) and np.all(np.isfinite(out.hand))):
            raise PolicyError(f"policy '{self.name}' gives no finite target at the pre-grasp")
        self.reset(probe)

    def diagnostics(self) -> dict[str, str]:
        out = dict(self.status)
        if self.target is not None:
            out["grasp_object"] = self.target.object_name
        return out
