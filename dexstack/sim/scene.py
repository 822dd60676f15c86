"""Build the MuJoCo model of the cell from the robot description, the cell config and the camera calibration."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import mujoco
import numpy as np

from dexstack.calibration import CameraCalibration
from dexstack.calibration.target import CalibrationTarget
from dexstack.camera_model import CameraModel
from dexstack.robot.description import RobotDescription
from dexstack.sim.config import CellConfig, texture_path
from dexstack.sim.human_hand import add_grasp_weld, add_human_hand
from dexstack.transforms import make_transform, matrix_to_quat_xyzw, pose_to_transform, rpy_to_matrix

# MuJoCo cameras look along -z with +y up; the REP-103 optical frame looks along +z with +y down.
R_OPTICAL_MUJOCO = np.diag([1.0, -1.0, -1.0])
OBJECT_JOINT = "object_free"
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1
SCENE_CONTYPE, SCENE_CONAFFINITY = 1, 3


TARGET_BODY = "calibration_target"
TARGET_THICKNESS_M = 0.004


def _wxyz(rotation: np.ndarray) -> list[float]:
    x, y, z, w = matrix_to_quat_xyzw(rotation)
    return [w, x, y, z]


@dataclass(frozen=True)
class TrueCamera:
    """What the sim camera really is (renders with): the cell's truth, not the calibration file's estimate."""

    name: str
    frame_id: str
    parent_frame: str
    T_parent_camera: np.ndarray  # 4x4, optical frame in parent_frame (the robot base, or a link: wrist camera)
    intrinsics: CameraModel
    depth_scale_m: float


def true_camera(cell: CellConfig, calibration: CameraCalibration) -> TrueCamera:
    """The cell's camera: pose and intrinsics from the cell config (default: the file's), then the perturbation."""
    c = cell.camera
    T = calibration.T_parent_camera if c.xyz_m is None else pose_to_transform(c.xyz_m, c.quat_xyzw)
    T = T @ make_transform(c.perturb_xyz_m, rpy_to_matrix(np.radians(c.perturb_rpy_deg)))
    intrinsics = calibration.intrinsics if c.intrinsics is None else CameraModel.from_dict(c.intrinsics)
    return TrueCamera(calibration.camera_name, calibration.frame_id, calibration.parent_frame, T, intrinsics,
                      calibration.depth_scale_m)


def _target_texture(target: CalibrationTarget) -> Path:
    """A MuJoCo cube-map PNG (layout .U..LFRB.D..) with the board on the D (-z) face, cached per target."""
    path = Path(tempfile.gettempdir()) / f"dexstack_target_{target.name}_{target.squares_x}x{target.squares_y}.png"
    if not path.is_file():
        face = target.image(px_per_m=4000.0)
        n = max(face.shape)
        face = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA)  # MuJoCo cube faces are square
        grid = np.full((3 * n, 4 * n), 255, np.uint8)
        for r, c in ((0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 1)):
            grid[r * n:(r + 1) * n, c * n:(c + 1) * n] = face[::-1, ::-1]  # D face: board frame as OpenCV
        cv2.imwrite(str(path), grid)
    return path


def calibration_camera(calibration: CameraCalibration) -> TrueCamera:
    """A camera rendered exactly where its calibration file says (the operator camera: no perturbation)."""
    return TrueCamera(calibration.camera_name, calibration.frame_id, calibration.parent_frame,
                      calibration.T_parent_camera, calibration.intrinsics, calibration.depth_scale_m)


def build_spec(description: RobotDescription, cell: CellConfig, camera: TrueCamera | None,
               target: CalibrationTarget | None = None, operator_camera: TrueCamera | None = None
               ) -> mujoco.MjSpec:
    spec = mujoco.MjSpec.from_string(description.mujoco_urdf_xml())
    spec.modelname = f"{cell.name}_{description.profile.name}"
    spec.option.timestep = cell.physics.timestep_s
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = cell.physics.impratio  # stiff friction: a static grip holds (see PhysicsConfig)
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, 1280)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, 960)
    spec.visual.map.znear = 0.01  # fraction of the model extent
    spec.visual.quality.offsamples = cell.render.multisamples  # see RenderConfig: the camera's CPU cost
    world = spec.worldbody

    # Gravity-compensate every robot body, as the real drivers do. Robot geoms touch the scene but not each other
    # (the Allegro's box collision shapes overlap at the thumb base): robot contype 2 / conaffinity 1, scene 1 / 3.
    robot_geoms = list(spec.geoms)
    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    for geom in robot_geoms:
        geom.contype, geom.conaffinity = ROBOT_CONTYPE, ROBOT_CONAFFINITY

    arm, hand = set(description.arm_joints), set(description.hand_joints)
    physics = cell.physics
    for joint in spec.joints:
        part = "arm" if joint.name in arm else "hand" if joint.name in hand else None
        if part is None:
            continue
        joint.damping = [physics.joint_damping.get(part, 0.0), 0.0, 0.0]  # MuJoCo 4: (linear, quadratic, cubic)
        joint.armature = physics.armature.get(part, 0.0)
        if part in physics.frictionloss:
            joint.frictionloss = physics.frictionloss[part]
    for name in description.joints:
        part = "arm" if name in arm else "hand"
        limits = description.limits[name]
        actuator = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=physics.gains[part]["kp"], kv=physics.gains[part]["kv"])
        actuator.ctrllimited = 1
        actuator.ctrlrange = [limits.lower, limits.upper]
        if math.isfinite(limits.effort):
            actuator.forcelimited = 1
            actuator.forcerange = [-limits.effort, limits.effort]

    # Scene: light, floor, table, object.
    world.add_light(pos=[0.5, 0.0, 2.5], dir=[0.0, 0.0, -1.0], diffuse=[0.8, 0.8, 0.8], castshadow=False)
    world.add_light(pos=[1.5, 1.0, 1.5], dir=[-0.6, -0.4, -0.6], diffuse=[0.4, 0.4, 0.4], castshadow=False)
    table = cell.table
    floor_z = table.center_xyz_m[2] - table.size_m[2] / 2 - 0.7
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, floor_z],
                   rgba=[0.3, 0.3, 0.32, 1], contype=SCENE_CONTYPE, conaffinity=SCENE_CONAFFINITY)
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[s / 2 for s in table.size_m],
                   pos=list(table.center_xyz_m), rgba=list(table.rgba), friction=[1.0, 0.005, 0.0001],
                   contype=SCENE_CONTYPE, conaffinity=SCENE_CONAFFINITY)
    obj = cell.object
    body = world.add_body(name=obj.name, pos=list(obj.initial_xyz_m), quat=_wxyz(rpy_to_matrix(obj.initial_rpy_rad)))
    body.add_freejoint(name=OBJECT_JOINT)
    mesh_kw = {}
    if obj.shape == "mesh":  # collided through its convex hull; mesh frame = object frame (no re-centring)
        spec.add_mesh(name=f"{obj.name}_mesh", file=str(texture_path(obj.mesh_file, "object.mesh_file")),
                      inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX)
        mesh_kw = {"meshname": f"{obj.name}_mesh"}
    geom_type, size = {
        "box": lambda: (mujoco.mjtGeom.mjGEOM_BOX, [s / 2 for s in obj.size_m]),
        "cylinder": lambda: (mujoco.mjtGeom.mjGEOM_CYLINDER, [obj.size_m[0], obj.size_m[1] / 2]),
        "sphere": lambda: (mujoco.mjtGeom.mjGEOM_SPHERE, [obj.size_m[0]]),
        "mesh": lambda: (mujoco.mjtGeom.mjGEOM_MESH, [0.0, 0.0, 0.0]),
    }[obj.shape]()
    geom = body.add_geom(name=f"{obj.name}_geom", type=geom_type, size=size, mass=obj.mass_kg, rgba=list(obj.rgba),
                         friction=[obj.friction, 0.005, 0.0001], condim=4,
                         contype=SCENE_CONTYPE, conaffinity=SCENE_CONAFFINITY, **mesh_kw)
    if obj.texture_file is not None:  # a cube map (e.g. AprilTags on a box's faces); rgba tints it
        spec.add_texture(name=f"{obj.name}_texture", type=mujoco.mjtTexture.mjTEXTURE_CUBE,
                         file=str(texture_path(obj.texture_file)), gridsize=[3, 4], gridlayout=".U..LFRB.D..")
        material = spec.add_material(name=f"{obj.name}_material", rgba=list(obj.rgba))
        material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{obj.name}_texture"
        geom.material = f"{obj.name}_material"

    if cell.human_hand.enabled:  # the operator's hand: kinematic, no contacts, can carry the object
        add_human_hand(spec, cell.human_hand)
        add_grasp_weld(spec, obj.name)
    for cam in (camera, operator_camera):
        if cam is not None:
            _add_camera(spec, cam, description)
    if target is not None:
        _add_target(spec, target, description.base_frame)
    return spec


def _add_camera(spec: mujoco.MjSpec, camera: TrueCamera, description: RobotDescription) -> None:
    intr = camera.intrinsics
    if abs(intr.fx - intr.fy) > 1e-6 * intr.fx:
        raise ValueError("the sim camera renders square pixels: intrinsics fx must equal fy")
    if abs(intr.cx - (intr.width - 1) / 2) > 1e-6 or abs(intr.cy - (intr.height - 1) / 2) > 1e-6:
        raise ValueError("the sim camera renders a centred principal point: cx, cy must be (width-1)/2, "
                         "(height-1)/2")
    if intr.has_distortion:
        raise ValueError("the sim camera renders without lens distortion: D must be zero")
    T = camera.T_parent_camera
    # Fixed in the base frame (the MuJoCo world), or on a robot link (a wrist camera moves with it).
    parent = spec.worldbody if camera.parent_frame == description.base_frame else spec.body(camera.parent_frame)
    if parent is None:
        raise ValueError(f"sim camera parent frame '{camera.parent_frame}' is neither the robot base "
                         f"'{description.base_frame}' nor a link of the robot")
    parent.add_camera(name=camera.name, pos=T[:3, 3].tolist(), quat=_wxyz(T[:3, :3] @ R_OPTICAL_MUJOCO),
                      fovy=math.degrees(intr.fovy_rad))


def _add_target(spec: mujoco.MjSpec, target: CalibrationTarget, base_frame: str) -> None:
    """The board as a thin visual-only box on its mount link; its printed face is the board frame's z = 0 plane."""
    parent = spec.worldbody if target.mount.link == base_frame else spec.body(target.mount.link)
    if parent is None:
        raise ValueError(f"calibration target mount link '{target.mount.link}' is not a body of the robot")
    T = target.mount.T_link_board
    body = parent.add_body(name=TARGET_BODY, pos=T[:3, 3].tolist(), quat=_wxyz(T[:3, :3]))
    sx, sy = target.size_m
    spec.add_texture(name="calibration_target_texture", type=mujoco.mjtTexture.mjTEXTURE_CUBE,
                     file=str(_target_texture(target)), gridsize=[3, 4], gridlayout=".U..LFRB.D..")
    material = spec.add_material(name="calibration_target_material", rgba=[1, 1, 1, 1])
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "calibration_target_texture"
    body.add_geom(name="calibration_target_geom", type=mujoco.mjtGeom.mjGEOM_BOX,
                  size=[sx / 2, sy / 2, TARGET_THICKNESS_M / 2], pos=[sx / 2, sy / 2, TARGET_THICKNESS_M / 2],
                  material="calibration_target_material", contype=0, conaffinity=0, mass=0.0, density=0.0)
