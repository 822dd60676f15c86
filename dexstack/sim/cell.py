"""The simulated cell: MuJoCo physics of the robot behind the same command semantics as the real drivers.

Arm commands execute like ros2_control's joint_trajectory_controller (interpolated setpoints, then hold); hand
commands are forward position targets. Malformed commands raise :class:`~dexstack.control.commands.CommandError`
and leave the current targets untouched, so the robot holds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from dexstack.calibration import CameraCalibration, load_camera_calibration
from dexstack.calibration.target import CalibrationTarget, load_target
from dexstack.control.commands import validate_positions, validate_trajectory
from dexstack.control.trajectory import TrajectoryFollower
from dexstack.robot.description import RobotDescription, load_description
from dexstack.sim.config import CellConfig, load_cell_config
from dexstack.sim.human_hand import HumanHandState
from dexstack.sim.scene import OBJECT_JOINT, TrueCamera, build_spec, calibration_camera, true_camera
from dexstack.transforms import make_transform, quat_xyzw_to_matrix


@dataclass(frozen=True)
class JointStateSample:
    """Measured state of every actuated joint, in ``description.joints`` order."""

    time_s: float  # simulation time
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    effort_nm: np.ndarray


class SimCell:
    """Physics of one cell. Thread-safe: commands, stepping and reads take one lock."""

    def __init__(self, cell: CellConfig | str = "tabletop", with_camera: bool = True):
        self.cell = load_cell_config(cell) if isinstance(cell, str) else cell
        self.description: RobotDescription = load_description(self.cell.robot_profile)
        self.calibration: CameraCalibration | None = (
            load_camera_calibration(self.cell.calibration) if with_camera else None
        )
        # The camera that renders is the cell's (its true pose); self.calibration is only the file's estimate.
        self.camera: TrueCamera | None = (
            true_camera(self.cell, self.calibration) if self.calibration is not None else None)
        self.target: CalibrationTarget | None = (
            load_target(self.cell.calibration_target) if self.cell.calibration_target else None)
        self.operator_calibration: CameraCalibration | None = (
            load_camera_calibration(self.cell.operator_calibration) if self.cell.operator_calibration else None
        )
        self.operator_camera: TrueCamera | None = (
            calibration_camera(self.operator_calibration) if self.operator_calibration is not None else None)
        self.spec = build_spec(self.description, self.cell, self.camera, self.target, self.operator_camera)
        self.model = self.spec.compile()
        self.data = mujoco.MjData(self.model)
        self.lock = threading.Lock()
        d = self.description
        self._qpos_adr = np.array([self.model.joint(n).qposadr[0] for n in d.joints])
        self._dof_adr = np.array([self.model.joint(n).dofadr[0] for n in d.joints])
        self._act_ids = np.array([self.model.actuator(n).id for n in d.joints])
        self._n_arm = len(d.arm_joints)
        self._object_qpos = self.model.joint(OBJECT_JOINT).qposadr[0]
        self._arm = TrajectoryFollower(np.zeros(self._n_arm))
        self._hand_target = np.zeros(len(d.hand_joints))
        # The operator's rendered hand (kinematic): its pose is set, and restored after every physics step.
        self.human_hand = HumanHandState(self.model) if self.cell.human_hand.enabled else None
        self._human_q = np.zeros(0)
        self._object_start: np.ndarray | None = None  # (7,) xyz + quat xyzw; None: the cell config's pose
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def joints(self) -> tuple[str, ...]:
        return self.description.joints

    @property
    def timestep_s(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    def reset(self, q_rad: np.ndarray | None = None) -> None:
        """Robot at ``q_rad`` (default: the profile's home), at rest, holding; object at its initial pose."""
        q = self.description.home() if q_rad is None else np.asarray(q_rad, dtype=float)
        with self.lock:
            mujoco.mj_resetData(self.model, self.data)
            self.data.qpos[self._qpos_adr] = q
            self._arm.hold(q[: self._n_arm])
            self._hand_target = q[self._n_arm:].copy()
            self.data.ctrl[self._act_ids] = q
            if self.human_hand is not None:
                self._human_q = self.data.qpos[self.human_hand.qpos_adr].copy()
            if self._object_start is not None:
                x, y, z, qx, qy, qz, qw = self._object_start
                self.data.qpos[self._object_qpos: self._object_qpos + 7] = (x, y, z, qw, qx, qy, qz)
            mujoco.mj_forward(self.model, self.data)

    def place_object(self, pose_xyz_quat_xyzw) -> None:
        """Put the object at rest at ``pose`` (xyz m + quat xyzw, base frame), now and at every reset."""
        pose = np.asarray(pose_xyz_quat_xyzw, dtype=float)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)) or np.linalg.norm(pose[3:]) < 1e-6:
            raise ValueError(f"object pose must be 7 finite numbers (xyz + quaternion xyzw), got {pose.tolist()}")
        pose[3:] /= np.linalg.norm(pose[3:])
        self._object_start = pose
        with self.lock:
            x, y, z, qx, qy, qz, qw = pose
            self.data.qpos[self._object_qpos: self._object_qpos + 7] = (x, y, z, qw, qx, qy, qz)
            dof = self.model.jnt_dofadr[self.model.joint(OBJECT_JOINT).id]
            self.data.qvel[dof: dof + 6] = 0.0
            mujoco.mj_forward(self.model, self.data)

    def joint_state(self) -> JointStateSample:
        with self.lock:
            return JointStateSample(
                time_s=float(self.data.time),
                position_rad=self.data.qpos[self._qpos_adr].copy(),
                velocity_rad_s=self.data.qvel[self._dof_adr].copy(),
                effort_nm=self.data.actuator_force[self._act_ids].copy(),
            )

    def object_pose(self) -> np.ndarray:
        """T_base_object: ground truth for evaluation only (the robot base is the MuJoCo world origin)."""
        with self.lock:
            x, y, z, qw, qx, qy, qz = self.data.qpos[self._object_qpos: self._object_qpos + 7]
        return make_transform((x, y, z), quat_xyzw_to_matrix((qx, qy, qz, qw)))

    def targets(self) -> np.ndarray:
        """Current position setpoints (arm, hand) in joint order."""
        with self.lock:
            return self.data.ctrl[self._act_ids].copy()

    def copy_qpos(self) -> tuple[float, np.ndarray]:
        """(time, qpos) snapshot for rendering on another MjData."""
        with self.lock:
            return float(self.data.time), self.data.qpos.copy()

    def copy_render_state(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(time, qpos, mocap_pos, mocap_quat) snapshot for rendering on another MjData (mocap: the human hand)."""
        with self.lock:
            d = self.data
            return float(d.time), d.qpos.copy(), d.mocap_pos.copy(), d.mocap_quat.copy()

    # ------------------------------------------------------------------ the operator's hand
    def set_human_hand(self, T_base_wrist: np.ndarray, q_rad: np.ndarray, grasp: bool | None = None) -> None:
        """Place the rendered human hand (wrist pose, ``human_hand.JOINTS`` angles, clipped to their ranges);
        ``grasp`` True/False attaches/releases the object to/from the hand where it is now (None: unchanged).
        Raises ValueError (and keeps the old pose) on malformed input or a cell without the hand."""
        hh = self.human_hand
        if hh is None:
            raise ValueError("this cell has no human hand (cell config human_hand.enabled: false)")
        T = np.asarray(T_base_wrist, dtype=float)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError("human hand wrist pose: expected a finite 4x4 transform")
        q = hh.clip(q_rad)
        with self.lock:
            hh.write(self.data, T, q)
            self._human_q = q
            if grasp is not None and hh.weld_id >= 0 and bool(self.data.eq_active[hh.weld_id]) != grasp:
                if grasp:  # weld at the current relative pose: the object does not jump to the hand
                    mujoco.mj_kinematics(self.model, self.data)
                    self._set_weld_reference()
                self.data.eq_active[hh.weld_id] = grasp

    def _set_weld_reference(self) -> None:
        """Weld's relative pose = the object's current pose in the hand's root frame (eq_data: anchor, relpose)."""
        hh, m, d = self.human_hand, self.model, self.data
        b1, b2 = m.eq_obj1id[hh.weld_id], m.eq_obj2id[hh.weld_id]
        R1, R2 = d.xmat[b1].reshape(3, 3), d.xmat[b2].reshape(3, 3)
        rel_pos = R1.T @ (d.xpos[b2] - d.xpos[b1])
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, (R1.T @ R2).reshape(-1))
        # MuJoCo weld data: anchor (3), relpose position (3), relpose quaternion (4), torquescale (1)
        m.eq_data[hh.weld_id, 0:3] = 0.0  # anchor: the object's origin
        m.eq_data[hh.weld_id, 3:6] = rel_pos
        m.eq_data[hh.weld_id, 6:10] = q

    def human_hand_grasping(self) -> bool:
        hh = self.human_hand
        with self.lock:
            return hh is not None and hh.weld_id >= 0 and bool(self.data.eq_active[hh.weld_id])

    def human_hand_keypoints(self) -> np.ndarray:
        """(21, 3) ground-truth keypoints of the rendered hand in the base frame (evaluation only)."""
        if self.human_hand is None:
            raise ValueError("this cell has no human hand")
        with self.lock:
            mujoco.mj_kinematics(self.model, self.data)
            return self.human_hand.keypoints(self.data)

    # ------------------------------------------------------------------ commands
    def command_arm_trajectory(
        self, joint_names: Sequence[str], positions: Sequence[Sequence[float]], times_from_start_s: Sequence[float]
    ) -> None:
        """Replace the arm trajectory, starting now. Raises CommandError (and keeps the old one) if malformed."""
        times, q = validate_trajectory(joint_names, positions, times_from_start_s, self.description.arm_joints)
        with self.lock:
            self._arm.set(float(self.data.time), times, q)

    def command_hand_positions(self, values: Sequence[float]) -> None:
        """New hand position targets in profile order. Raises CommandError (and holds) if malformed."""
        q = validate_positions(values, len(self.description.hand_joints), "hand command")
        with self.lock:
            self._hand_target = q

    # ------------------------------------------------------------------ physics
    def step(self, n: int = 1) -> None:
        with self.lock:
            for _ in range(n):
                arm = self._arm.sample(float(self.data.time))
                self.data.ctrl[self._act_ids[: self._n_arm]] = arm
                self.data.ctrl[self._act_ids[self._n_arm:]] = self._hand_target
                mujoco.mj_step(self.model, self.data)
                if self.human_hand is not None:  # kinematic: undo whatever the step did to the hand's joints
                    self.data.qpos[self.human_hand.qpos_adr] = self._human_q
                    self.data.qvel[self.human_hand.dof_adr] = 0.0
