"""Human wrist pose -> robot palm pose target (:class:`WristMapper`) -> arm joints (:class:`ArmIK`).

Poses are 4x4 ``T_base_x`` in the robot base frame (``description.base_frame``: the profile's arm base_link), metres.

The human wrist pose is the pose of the human hand frame ``H`` (:mod:`dexstack.retarget.keypoints`): origin at
the wrist, x along the fingers, z out of the palm. Its analogue on the robot is the hand config's ``human_frame``
(``T_palm_H``, e.g. the Allegro's wrist), so the robot palm target is ``T_base_W * inv(T_palm_H)`` where ``W``
follows the human wrist: the robot turns about its own wrist point as the human does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from dexstack.retarget.hand import bounded_newton_step
from dexstack.robot.description import RobotDescription

log = logging.getLogger(__name__)


def check_pose(T: np.ndarray, what: str) -> np.ndarray:
    """``T`` as a float 4x4 rigid transform; ``ValueError`` naming ``what`` otherwise."""
    T = np.asarray(T, dtype=float)
    if T.shape != (4, 4):
        raise ValueError(f"{what}: expected a 4x4 transform, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError(f"{what}: contains NaN or inf")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0 or not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f"{what}: not a rigid transform (rotation not orthonormal or last row not 0 0 0 1)")
    return T


@dataclass(frozen=True)
class ArmIKConfig:
    """Damped-least-squares IK of one frame's pose over the arm joints, within the joint limits."""

    frame: str | None = None  # default: the profile's palm link
    max_iterations: int = 50
    position_tol_m: float = 1e-4
    rotation_tol_rad: float = 1e-3
    rotation_weight_m: float = 0.1  # metres of position error worth one radian of orientation error
    damping: float = 1e-4  # lambda^2 of the damped least squares (m^2)
    max_step_rad: float = 0.3  # largest joint change per iteration
    # weight (m^2/rad^2) of |q - q_home|^2: steers the redundant (null-space) motion towards the home posture,
    # ~posture_weight / damping of the way per iteration; biases the pose by only ~posture_weight * |q - home|
    posture_weight: float = 0.0


@dataclass(frozen=True)
class IKResult:
    q_rad: np.ndarray  # arm joints, ``description.arm_joints`` order
    converged: bool
    position_error_m: float
    rotation_error_rad: float
    iterations: int


class ArmIK:
    """Pose IK for the arm (a pinocchio model of the merged description with the hand joints locked).

    Warm-started from the previous solution; every iterate stays within the description's joint limits (projected
    Newton). An unreachable target returns the closest pose found with ``converged=False``.
    """

    def __init__(self, description: RobotDescription, config: ArmIKConfig | None = None):
        self.description = description
        self.config = config or ArmIKConfig()
        frame = self.config.frame or description.profile.hand.palm_link
        full = pin.buildModelFromXML(description.urdf_xml)
        if not full.existFrame(frame):
            raise ValueError(f"ArmIK frame '{frame}' is not in the robot description")
        arm_ids = {full.getJointId(j) for j in description.arm_joints}
        joint = full.frames[full.getFrameId(frame)].parentJoint
        if joint != 0 and joint not in arm_ids:
            raise ValueError(f"ArmIK frame '{frame}' moves with the hand joints; use a link rigid to the flange")
        hand_ids = [full.getJointId(j) for j in description.hand_joints]
        # Locked hand joints become fixed: the reduced model has the arm joints only (nq = 7 for the Panda)
        self.model = pin.buildReducedModel(full, hand_ids, pin.neutral(full))
        self.data = self.model.createData()
        self.frame = frame
        self.frame_id = self.model.getFrameId(frame)
        self.joint_names = description.arm_joints
        if self.model.nq != len(self.joint_names) or self.model.nv != len(self.joint_names):
            raise ValueError(f"arm model has nq={self.model.nq}; ArmIK supports 1-DoF arm joints only")
        self.pin_index = np.array([self.model.idx_qs[self.model.getJointId(j)] for j in self.joint_names])
        limits = description.limit_arrays(self.joint_names)
        self.lower_rad, self.upper_rad = limits["lower"], limits["upper"]
        self._lower = self._to_pin(self.lower_rad)
        self._upper = self._to_pin(self.upper_rad)
        self._home = self._to_pin(description.home(self.joint_names))
        self.reset()
        log.debug("ArmIK: frame '%s', %d arm joints", frame, len(self.joint_names))

    def _to_pin(self, q_rad: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.joint_names))
        out[self.pin_index] = q_rad
        return out

    def reset(self, q_rad: np.ndarray | None = None) -> None:
        """Warm start the next solve from ``q_rad`` (arm joints, description order; default the home)."""
        q = self.description.home(self.joint_names) if q_rad is None else np.asarray(q_rad, dtype=float)
        if q.shape != (len(self.joint_names),) or not np.isfinite(q).all():
            raise ValueError(f"expected {len(self.joint_names)} finite arm joint positions, got {q!r}")
        self._q = self._to_pin(np.clip(q, self.lower_rad, self.upper_rad))

    def forward(self, q_rad: np.ndarray) -> np.ndarray:
        """T_base_frame (4x4) for arm joints ``q_rad`` (description order)."""
        pin.framesForwardKinematics(self.model, self.data, self._to_pin(np.asarray(q_rad, dtype=float)))
        return self.data.oMf[self.frame_id].homogeneous.copy()

    def solve(self, T_base_target: np.ndarray, q_seed_rad: np.ndarray | None = None) -> IKResult:
        """Joint positions putting ``frame`` at ``T_base_target``; warm start from ``q_seed_rad`` or the last solve.

        ``ValueError`` on a malformed target (the warm start is kept).
        """
        T = check_pose(T_base_target, "IK target")
        if q_seed_rad is not None:
            self.reset(q_seed_rad)
        cfg, model, data, fid = self.config, self.model, self.data, self.frame_id
        p_t, R_t = T[:3, 3], T[:3, :3]
        w = cfg.rotation_weight_m
        W = np.array([1.0, 1.0, 1.0, w, w, w])
        q = self._q.copy()
        diag = (cfg.damping + cfg.posture_weight) * np.eye(len(q))
        converged, it, e_p, e_r = False, 0, np.inf, np.inf
        for it in range(cfg.max_iterations + 1):
            pin.computeJointJacobians(model, data, q)
            M = pin.updateFramePlacement(model, data, fid)
            err_p = p_t - M.translation
            err_r = pin.log3(R_t @ M.rotation.T)  # base-frame rotation vector from current to target
            e_p, e_r = math.sqrt(err_p @ err_p), math.sqrt(err_r @ err_r)
            if e_p < cfg.position_tol_m and e_r < cfg.rotation_tol_rad:
                converged = True
                break
            if it == cfg.max_iterations:
                break
            J = pin.getFrameJacobian(model, data, fid, pin.LOCAL_WORLD_ALIGNED) * W[:, None]
            e = np.concatenate((err_p, err_r)) * W
            H = J.T @ J
            H += diag
            g = -(J.T @ e)
            if cfg.posture_weight:
                g += cfg.posture_weight * (q - self._home)
            step, _ = bounded_newton_step(H, g, q, self._lower, self._upper, cfg.max_step_rad)
            q = q + step
        self._q = q
        return IKResult(q_rad=q[self.pin_index].copy(), converged=converged, position_error_m=e_p,
                        rotation_error_rad=e_r, iterations=it)


@dataclass(frozen=True)
class WristMapperConfig:
    """How the human wrist moves the robot palm target.

    ``relative`` (clutch): while engaged, the robot wrist frame follows the human wrist's *motion since engage*
    (translation times ``position_scale``, rotation about the base axes); engaging records both poses so the
    target starts exactly at the robot's current pose (no jump); disengaged, nothing is commanded and the human
    may re-centre. ``absolute``: robot wrist = human wrist, position scaled, plus ``offset_m`` (base frame).
    """

    mode: str = "relative"
    position_scale: float = 1.0
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)  # absolute mode
    workspace_min_m: tuple[float, float, float] | None = None  # optional clamp of the palm target position
    workspace_max_m: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("relative", "absolute"):
            raise ValueError(f"WristMapper mode must be 'relative' or 'absolute', got {self.mode!r}")
        if not np.isfinite(self.position_scale) or self.position_scale <= 0:
            raise ValueError(f"position_scale must be > 0, got {self.position_scale}")
        if (self.workspace_min_m is None) != (self.workspace_max_m is None):
            raise ValueError("give both workspace_min_m and workspace_max_m, or neither")
        if self.workspace_min_m is not None and np.any(np.asarray(self.workspace_min_m) > self.workspace_max_m):
            raise ValueError(f"workspace_min_m {self.workspace_min_m} exceeds workspace_max_m {self.workspace_max_m}")


class WristMapper:
    """Human wrist pose ``T_base_H`` (robot base frame) -> palm target ``T_base_palm``, with a clutch.

    ``T_palm_H`` is where the human hand frame sits on the robot hand (``HandRetargeter.T_root_H`` when the hand
    root is the palm, the default).
    """

    def __init__(self, T_palm_H: np.ndarray, config: WristMapperConfig | None = None):
        self.config = config or WristMapperConfig()
        self.T_palm_H = check_pose(T_palm_H, "T_palm_H")
        self.T_H_palm = np.linalg.inv(self.T_palm_H)
        self._ref: tuple[np.ndarray, np.ndarray] | None = None  # (T_base_H at engage, T_base_W at engage)
        self.last_target: np.ndarray | None = None

    @property
    def engaged(self) -> bool:
        return self.config.mode == "absolute" or self._ref is not None

    def engage(self, T_base_H: np.ndarray, T_base_palm_now: np.ndarray) -> np.ndarray:
        """Start following (or re-centre): from now on the target moves with the human from the robot's current
        palm pose. Returns that pose (the first target, equal to the current one)."""
        H0 = check_pose(T_base_H, "human wrist pose")
        P0 = check_pose(T_base_palm_now, "current palm pose")
        self._ref = (H0, P0 @ self.T_palm_H)
        self.last_target = P0.copy()
        return P0.copy()

    def disengage(self) -> None:
        """Stop following; :meth:`update` returns None (hold) until the next :meth:`engage`."""
        self._ref = None

    def update(self, T_base_H: np.ndarray) -> np.ndarray | None:
        """The palm target for the current human wrist pose, or None while the clutch is disengaged."""
        H = check_pose(T_base_H, "human wrist pose")
        cfg = self.config
        W = np.eye(4)
        if cfg.mode == "absolute":
            W[:3, :3] = H[:3, :3]
            W[:3, 3] = cfg.position_scale * H[:3, 3] + np.asarray(cfg.offset_m)
        elif self._ref is None:
            return None
        else:
            H0, W0 = self._ref
            W[:3, :3] = H[:3, :3] @ H0[:3, :3].T @ W0[:3, :3]
            W[:3, 3] = W0[:3, 3] + cfg.position_scale * (H[:3, 3] - H0[:3, 3])
        target = W @ self.T_H_palm
        if cfg.workspace_min_m is not None:
            target[:3, 3] = np.clip(target[:3, 3], cfg.workspace_min_m, cfg.workspace_max_m)
        self.last_target = target
        return target.copy()
