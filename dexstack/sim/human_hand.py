"""A rendered human hand for the simulated cell: articulated, skin-coloured, with forearm; 21 MANO-order keypoint
sites known exactly. Kinematic: its root is a mocap body and its joints are set, never simulated into contact
(contype = conaffinity = 0), so it never pushes the robot. It can carry the object (a weld to its palm, toggled).

Hand frame ``H`` (as :mod:`dexstack.retarget.keypoints`): origin at the wrist, x toward the middle-finger MCP,
z out of the palm, y = z x x (toward the pinky of a right hand). A left hand is the mirror image (y -> -y), so the
same joint angles give the mirrored pose and :func:`dexstack.retarget.keypoints.hand_frame_from_keypoints` with
``side="left"`` recovers the same frame.

What made MediaPipe Hands detect it (see the README): a forearm, fingers as thick as real ones (~17-19 mm), a
rounded palm, matte skin (no specular), and a background darker than the skin; a strong headlight kills it.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from dexstack.perception.hand import KEYPOINT_NAMES
from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix

PREFIX = "human_hand"
ROOT_BODY = f"{PREFIX}/wrist"
GRASP_WELD = f"{PREFIX}/grasp"
NOMINAL_WRIST_TO_MIDDLE_TIP_M = 0.185
FINGERS = ("index", "middle", "ring", "pinky")

# Nominal adult right hand (wrist to middle tip 0.185 m), hand frame H, metres. MCP positions and phalanx lengths
# follow dexstack.perception.hand.NOMINAL_BONE_LENGTH_M; radii are real finger half-thicknesses.
_MCP_XYZ = {"index": (0.087, -0.024, 0.0), "middle": (0.088, -0.002, 0.0),
            "ring": (0.080, 0.018, 0.0), "pinky": (0.071, 0.036, 0.0)}
_PHALANX_M = {"index": (0.042, 0.025, 0.021), "middle": (0.046, 0.028, 0.022),
              "ring": (0.042, 0.027, 0.022), "pinky": (0.034, 0.020, 0.019)}
_RADIUS_M = {"index": (0.0095, 0.0085, 0.0078), "middle": (0.0098, 0.0088, 0.008),
             "ring": (0.0092, 0.0083, 0.0076), "pinky": (0.0082, 0.0075, 0.0068)}
_THUMB_CMC_XYZ = (0.026, -0.030, 0.010)
_THUMB_M = (0.040, 0.032, 0.028)
_THUMB_RADIUS_M = (0.0125, 0.0105, 0.0095)
# Thumb rest direction (metacarpal) and its palmar side, in H: forward, to the index side and a little palmar.
_THUMB_DIR = (0.62, -0.72, 0.30)
_THUMB_PALMAR = (0.35, 0.45, 0.82)

# Joint order of the hand's driven joints (the command vector); ranges in radians.
JOINTS: tuple[str, ...] = (
    "thumb_cmc_abd", "thumb_cmc_flex", "thumb_mcp", "thumb_ip",
    *(f"{f}_{j}" for f in FINGERS for j in ("mcp_abd", "mcp_flex", "pip", "dip")),
)
JOINT_RANGE_RAD: dict[str, tuple[float, float]] = {
    "thumb_cmc_abd": (-0.6, 0.9), "thumb_cmc_flex": (-0.4, 1.0), "thumb_mcp": (-0.2, 1.0), "thumb_ip": (-0.3, 1.3),
    **{f"{f}_mcp_abd": (-0.35, 0.35) for f in FINGERS},
    **{f"{f}_mcp_flex": (-0.3, 1.6) for f in FINGERS},
    **{f"{f}_pip": (0.0, 1.9) for f in FINGERS},
    **{f"{f}_dip": (0.0, 1.4) for f in FINGERS},
}


@dataclass(frozen=True)
class HumanHandConfig:
    """The operator's hand in the cell (``human_hand:`` in a cell config)."""

    enabled: bool = False
    side: str = "right"  # "right" | "left"
    wrist_to_middle_tip_m: float = NOMINAL_WRIST_TO_MIDDLE_TIP_M  # hand size (adults ~0.17-0.20)
    skin_rgba: tuple[float, float, float, float] = (0.80, 0.60, 0.48, 1.0)
    forearm_length_m: float = 0.26  # 0: no forearm
    # Where the hand rests before any command: T_base_H as (x, y, z) metres and (roll, pitch, yaw) radians.
    rest_xyz_m: tuple[float, float, float] = (0.35, -0.95, 0.30)
    rest_rpy_rad: tuple[float, float, float] = (3.14159265, 0.0, 0.0)  # palm down, fingers along +x

    def __post_init__(self) -> None:
        if self.side not in ("right", "left"):
            raise ValueError(f"human_hand.side '{self.side}' must be 'right' or 'left'")
        if not 0.12 <= self.wrist_to_middle_tip_m <= 0.26:
            raise ValueError(f"human_hand.wrist_to_middle_tip_m {self.wrist_to_middle_tip_m} outside [0.12, 0.26]")
        if not 0.0 <= self.forearm_length_m <= 0.5:
            raise ValueError(f"human_hand.forearm_length_m {self.forearm_length_m} outside [0, 0.5]")
        if len(self.skin_rgba) != 4 or not all(0.0 <= c <= 1.0 for c in self.skin_rgba):
            raise ValueError("human_hand.skin_rgba must be 4 values in [0, 1]")

    @property
    def scale(self) -> float:
        return self.wrist_to_middle_tip_m / NOMINAL_WRIST_TO_MIDDLE_TIP_M


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _wxyz(R: np.ndarray) -> list[float]:
    x, y, z, w = matrix_to_quat_xyzw(R)
    return [float(w), float(x), float(y), float(z)]


def _thumb_rotation() -> np.ndarray:
    """Rotation H <- thumb frame: x along the metacarpal, z its palmar side, y = z x x."""
    x = _unit(_THUMB_DIR)
    z = _unit(np.asarray(_THUMB_PALMAR) - (np.asarray(_THUMB_PALMAR) @ x) * x)
    return np.column_stack((x, np.cross(z, x), z))


def add_human_hand(spec: mujoco.MjSpec, config: HumanHandConfig, contype: int = 0, conaffinity: int = 0) -> None:
    """Add the hand (mocap root ``human_hand/wrist``, joints ``human_hand/<JOINTS>``, keypoint sites
    ``human_hand/kp/<KEYPOINT_NAMES>``, the ``human_hand/grasp`` weld, inactive) to ``spec``'s world."""
    s = config.scale
    m = 1.0 if config.side == "right" else -1.0  # mirror y for a left hand

    def p(xyz) -> list[float]:
        return [s * xyz[0], s * m * xyz[1], s * xyz[2]]

    skin = spec.add_material(name=f"{PREFIX}/skin", rgba=list(config.skin_rgba))
    skin.specular, skin.shininess, skin.reflectance = 0.0, 0.0, 0.0
    x0, y0, z0 = config.rest_xyz_m
    root = spec.worldbody.add_body(name=ROOT_BODY, mocap=True, pos=[x0, y0, z0],
                                   quat=_wxyz(rpy_to_matrix(config.rest_rpy_rad)))

    def geom(body, **kw):
        return body.add_geom(contype=contype, conaffinity=conaffinity, material=f"{PREFIX}/skin", group=1,
                             **kw)

    def site(body, name: str, pos) -> None:
        body.add_site(name=f"{PREFIX}/kp/{name}", pos=list(pos), size=[0.003, 0, 0], group=5, rgba=[0, 1, 0, 1])

    capsule, ellipsoid = mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_ELLIPSOID
    site(root, KEYPOINT_NAMES[0], [0, 0, 0])
    if config.forearm_length_m > 0:  # the forearm tapers from the elbow to the wrist
        geom(root, type=capsule, size=[s * 0.026, 0, 0],
             fromto=[-s * 0.03, 0, 0, -config.forearm_length_m, 0, -0.005])
        geom(root, type=ellipsoid, size=[s * 0.024, s * 0.029, s * 0.018], pos=[-s * 0.004, 0, 0])
    # Palm: a flattened ellipsoid body plus a rounded knuckle bar under the MCPs and the thenar eminence.
    geom(root, type=ellipsoid, size=[s * 0.050, s * 0.044, s * 0.015], pos=p((0.045, 0.005, 0.0)))
    geom(root, type=capsule, size=[s * 0.013, 0, 0], fromto=p((0.080, -0.026, 0.0)) + p((0.068, 0.036, 0.0)))
    geom(root, type=ellipsoid, size=[s * 0.030, s * 0.018, s * 0.013], pos=p((0.030, -0.020, 0.007)),
         euler=[0, 0, -m * 0.7])
    joint_axis_flex = [0, -m, 0]  # positive flexion curls toward the palm (+z)
    for finger in FINGERS:
        mcp = _MCP_XYZ[finger]
        body = root.add_body(name=f"{PREFIX}/{finger}_1", pos=p(mcp))
        body.add_joint(name=f"{PREFIX}/{finger}_mcp_abd", axis=[0, 0, m], range=list(JOINT_RANGE_RAD[
            f"{finger}_mcp_abd"]), limited=1)
        body.add_joint(name=f"{PREFIX}/{finger}_mcp_flex", axis=joint_axis_flex,
                       range=list(JOINT_RANGE_RAD[f"{finger}_mcp_flex"]), limited=1)
        site(body, f"{finger}_mcp", [0, 0, 0])
        names = ("pip", "dip", "tip")
        for k, (length, radius) in enumerate(zip(_PHALANX_M[finger], _RADIUS_M[finger])):
            L, r = s * length, s * radius
            end = L - 0.6 * r if k == 2 else L  # the fingertip keypoint sits just inside the rounded tip
            geom(body, type=capsule, size=[r, 0, 0], fromto=[0, 0, 0, end, 0, 0])
            if k < 2:
                body = body.add_body(name=f"{PREFIX}/{finger}_{k + 2}", pos=[L, 0, 0])
                body.add_joint(name=f"{PREFIX}/{finger}_{names[k]}", axis=joint_axis_flex,
                               range=list(JOINT_RANGE_RAD[f"{finger}_{names[k]}"]), limited=1)
                site(body, f"{finger}_{names[k]}", [0, 0, 0])
            else:
                site(body, f"{finger}_tip", [L, 0, 0])
    # Thumb: CMC (two axes), MCP, IP; its frame has x along the bone and z on its palmar side.
    R = _thumb_rotation()
    if m < 0:
        M = np.diag([1.0, -1.0, 1.0])
        R = M @ R @ M
    body = root.add_body(name=f"{PREFIX}/thumb_1", pos=p(_THUMB_CMC_XYZ), quat=_wxyz(R))
    body.add_joint(name=f"{PREFIX}/thumb_cmc_abd", axis=[0, 0, m], range=list(JOINT_RANGE_RAD["thumb_cmc_abd"]),
                   limited=1)
    body.add_joint(name=f"{PREFIX}/thumb_cmc_flex", axis=joint_axis_flex,
                   range=list(JOINT_RANGE_RAD["thumb_cmc_flex"]), limited=1)
    site(body, "thumb_cmc", [0, 0, 0])
    names = ("mcp", "ip", "tip")
    for k, (length, radius) in enumerate(zip(_THUMB_M, _THUMB_RADIUS_M)):
        L, r = s * length, s * radius
        end = L - 0.6 * r if k == 2 else L
        geom(body, type=capsule, size=[r, 0, 0], fromto=[0, 0, 0, end, 0, 0])
        if k < 2:
            body = body.add_body(name=f"{PREFIX}/thumb_{k + 2}", pos=[L, 0, 0])
            body.add_joint(name=f"{PREFIX}/thumb_{names[k]}", axis=joint_axis_flex,
                           range=list(JOINT_RANGE_RAD[f"thumb_{names[k]}"]), limited=1)
            site(body, f"thumb_{names[k]}", [0, 0, 0])
        else:
            site(body, "thumb_tip", [L, 0, 0])
    for b in spec.bodies:
        if b.name.startswith(PREFIX):
            b.gravcomp = 1.0
    for j in spec.joints:
        if j.name.startswith(PREFIX):
            j.damping = [1.0, 0.0, 0.0]
            j.armature = 1e-4


def add_grasp_weld(spec: mujoco.MjSpec, object_body: str) -> None:
    """An (inactive) weld that makes ``object_body`` follow the hand's root while active."""
    eq = spec.add_equality(name=GRASP_WELD, type=mujoco.mjtEq.mjEQ_WELD, name1=ROOT_BODY, name2=object_body,
                           objtype=mujoco.mjtObj.mjOBJ_BODY)
    eq.active = False
    eq.solref = [0.02, 1.0]
    data = np.array(eq.data)
    data[0:3] = 0.0  # anchor at the object's origin; the relative pose is set when the grasp starts
    eq.data = data


class HumanHandState:
    """Indices of the hand in a compiled model; reads keypoints and writes the hand's pose into an MjData."""

    def __init__(self, model: mujoco.MjModel):
        self.mocap_id = int(model.body_mocapid[model.body(ROOT_BODY).id])
        if self.mocap_id < 0:
            raise ValueError(f"body '{ROOT_BODY}' is not a mocap body")
        self.qpos_adr = np.array([model.joint(f"{PREFIX}/{j}").qposadr[0] for j in JOINTS])
        self.dof_adr = np.array([model.joint(f"{PREFIX}/{j}").dofadr[0] for j in JOINTS])
        self.site_ids = np.array([model.site(f"{PREFIX}/kp/{n}").id for n in KEYPOINT_NAMES])
        self.lower = np.array([JOINT_RANGE_RAD[j][0] for j in JOINTS])
        self.upper = np.array([JOINT_RANGE_RAD[j][1] for j in JOINTS])
        try:
            self.weld_id = int(model.equality(GRASP_WELD).id)
        except KeyError:
            self.weld_id = -1

    def clip(self, q_rad: np.ndarray) -> np.ndarray:
        q = np.asarray(q_rad, dtype=float)
        if q.shape != (len(JOINTS),) or not np.isfinite(q).all():
            raise ValueError(f"human hand joints: expected {len(JOINTS)} finite values, got shape {q.shape}")
        return np.clip(q, self.lower, self.upper)

    def write(self, data: mujoco.MjData, T_base_wrist: np.ndarray, q_rad: np.ndarray) -> None:
        """Place the hand (root pose in the world = robot base frame, finger joints) in ``data``; no forward."""
        T = np.asarray(T_base_wrist, dtype=float)
        data.mocap_pos[self.mocap_id] = T[:3, 3]
        data.mocap_quat[self.mocap_id] = _wxyz(T[:3, :3])
        data.qpos[self.qpos_adr] = self.clip(q_rad)
        data.qvel[self.dof_adr] = 0.0

    def keypoints(self, data: mujoco.MjData) -> np.ndarray:
        """(21, 3) keypoints in the world (= robot base) frame, MANO order; needs a forward/kinematics pass."""
        return data.site_xpos[self.site_ids].copy()


def _pose(thumb=(0.0, 0.0, 0.0, 0.0), index=(0.0, 0.0, 0.0, 0.0), middle=(0.0, 0.0, 0.0, 0.0),
          ring=(0.0, 0.0, 0.0, 0.0), pinky=(0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    return np.array([*thumb, *index, *middle, *ring, *pinky], dtype=float)


# Named hand shapes (JOINTS order; per finger: MCP abduction (+ toward the pinky), MCP flexion, PIP, DIP).
POSES: dict[str, np.ndarray] = {
    "open": _pose(thumb=(-0.2, -0.1, 0.0, 0.0), index=(-0.12, 0.0, 0.0, 0.0), ring=(0.08, 0.0, 0.0, 0.0),
                  pinky=(0.18, 0.0, 0.0, 0.0)),
    "relaxed": _pose(thumb=(0.1, 0.2, 0.2, 0.2), index=(-0.05, 0.25, 0.35, 0.2), middle=(0.0, 0.3, 0.4, 0.25),
                     ring=(0.05, 0.35, 0.45, 0.25), pinky=(0.1, 0.4, 0.5, 0.3)),
    "pinch": _pose(thumb=(0.55, 0.35, 0.35, 0.45), index=(0.0, 0.65, 0.75, 0.45), middle=(0.0, 0.3, 0.4, 0.25),
                   ring=(0.05, 0.35, 0.45, 0.25), pinky=(0.1, 0.4, 0.5, 0.3)),
    "power": _pose(thumb=(0.5, 0.6, 0.5, 0.6), index=(0.0, 1.1, 1.3, 0.8), middle=(0.0, 1.15, 1.35, 0.85),
                   ring=(0.05, 1.2, 1.35, 0.85), pinky=(0.1, 1.25, 1.35, 0.85)),
    "point": _pose(thumb=(0.45, 0.55, 0.45, 0.5), index=(0.0, 0.0, 0.05, 0.0), middle=(0.0, 1.3, 1.5, 0.9),
                   ring=(0.05, 1.35, 1.5, 0.9), pinky=(0.1, 1.4, 1.5, 0.9)),
}


# ---------------------------------------------------------------------- the command that places the hand
# sensor_msgs/JointState-shaped: the wrist pose as 7 pseudo-joints (position, quaternion x y z w, base frame), the
# grasp flag (1 = the object follows the hand) and the finger joints, all in one message so they stay consistent.
ROOT_FIELDS: tuple[str, ...] = tuple(f"{PREFIX}/root/{k}" for k in ("x", "y", "z", "qx", "qy", "qz", "qw"))
GRASP_FIELD = f"{PREFIX}/grasp"
COMMAND_NAMES: tuple[str, ...] = (*ROOT_FIELDS, GRASP_FIELD, *(f"{PREFIX}/{j}" for j in JOINTS))


@dataclass(frozen=True)
class HumanHandCommand:
    T_base_wrist: np.ndarray  # 4x4, the hand frame H in the robot base frame
    q_rad: np.ndarray  # JOINTS order
    grasp: bool = False

    def encode(self) -> tuple[list[str], list[float]]:
        """(names, positions) of the JointState that carries this command."""
        x, y, z = self.T_base_wrist[:3, 3]
        quat = matrix_to_quat_xyzw(self.T_base_wrist[:3, :3])
        values = [float(x), float(y), float(z), *map(float, quat), 1.0 if self.grasp else 0.0,
                  *map(float, self.q_rad)]
        return list(COMMAND_NAMES), values

    @staticmethod
    def decode(names, positions) -> HumanHandCommand:
        """Inverse of :meth:`encode`, in any name order. Raises ValueError naming what is wrong."""
        from dexstack.transforms import pose_to_transform

        names, positions = list(names), list(positions)
        if len(names) != len(positions):
            raise ValueError(f"{len(names)} names but {len(positions)} positions")
        values = dict(zip(names, positions))
        missing = [n for n in COMMAND_NAMES if n not in values]
        if missing:
            raise ValueError(f"missing {len(missing)} fields, e.g. '{missing[0]}'")
        v = np.array([values[n] for n in COMMAND_NAMES], dtype=float)
        if not np.isfinite(v).all():
            raise ValueError("non-finite values")
        T = pose_to_transform(v[:3], v[3:7])
        return HumanHandCommand(T_base_wrist=T, q_rad=v[8:], grasp=bool(v[7] > 0.5))


class HumanHandKinematics:
    """The hand model alone (no cell): exact keypoints for a wrist pose and joint angles, without rendering."""

    def __init__(self, config: HumanHandConfig | None = None):
        spec = mujoco.MjSpec()
        add_human_hand(spec, config or HumanHandConfig(enabled=True))
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.state = HumanHandState(self.model)

    def keypoints(self, T_base_wrist: np.ndarray, q_rad: np.ndarray) -> np.ndarray:
        """(21, 3) keypoints in the base frame, MANO order."""
        self.state.write(self.data, T_base_wrist, q_rad)
        mujoco.mj_kinematics(self.model, self.data)
        return self.state.keypoints(self.data)
