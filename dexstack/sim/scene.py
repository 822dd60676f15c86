"""Build the MuJoCo model of the cell from the robot description, the cell config and the camera calibration."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from dexstack.calibration import CameraCalibration
from dexstack.robot.description import RobotDescription
from dexstack.sim.config import CellConfig, texture_path
from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix

# MuJoCo cameras look along -z with +y up; the REP-103 optical frame looks along +z with +y down.
R_OPTICAL_MUJOCO = np.diag([1.0, -1.0, -1.0])
OBJECT_JOINT = "object_free"
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1
SCENE_CONTYPE, SCENE_CONAFFINITY = 1, 3


def _wxyz(rotation: np.ndarray) -> list[float]:
    x, y, z, w = matrix_to_quat_xyzw(rotation)
    return [w, x, y, z]


def build_spec(description: RobotDescription, cell: CellConfig, calibration: CameraCalibration | None) -> mujoco.MjSpec:
    spec = mujoco.MjSpec.from_string(description.mujoco_urdf_xml())
    spec.modelname = f"{cell.name}_{description.profile.name}"
    spec.option.timestep = cell.physics.timestep_s
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, 1280)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, 960)
    spec.visual.map.znear = 0.01  # fraction of the model extent
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
    geom_type, size = {
        "box": (mujoco.mjtGeom.mjGEOM_BOX, [s / 2 for s in obj.size_m]),
        "cylinder": (mujoco.mjtGeom.mjGEOM_CYLINDER, [obj.size_m[0], obj.size_m[1] / 2]),
        "sphere": (mujoco.mjtGeom.mjGEOM_SPHERE, [obj.size_m[0]]),
    }[obj.shape]
    geom = body.add_geom(name=f"{obj.name}_geom", type=geom_type, size=size, mass=obj.mass_kg, rgba=list(obj.rgba),
                         friction=[obj.friction, 0.005, 0.0001], condim=4,
                         contype=SCENE_CONTYPE, conaffinity=SCENE_CONAFFINITY)
    if obj.texture_file is not None:  # a cube map (e.g. AprilTags on a box's faces); rgba tints it
        spec.add_texture(name=f"{obj.name}_texture", type=mujoco.mjtTexture.mjTEXTURE_CUBE,
                         file=str(texture_path(obj.texture_file)), gridsize=[3, 4], gridlayout=".U..LFRB.D..")
        material = spec.add_material(name=f"{obj.name}_material", rgba=list(obj.rgba))
        material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{obj.name}_texture"
        geom.material = f"{obj.name}_material"

    if calibration is not None:
        intr = calibration.intrinsics
        if abs(intr.fx - intr.fy) > 1e-6 * intr.fx:
            raise ValueError("the sim camera renders square pixels: calibration fx must equal fy")
        T = calibration.T_parent_camera
        if calibration.parent_frame != description.base_frame:
            raise ValueError(f"sim camera calibration is relative to '{calibration.parent_frame}', "
                             f"expected the robot base frame '{description.base_frame}'")
        world.add_camera(name=calibration.camera_name, pos=T[:3, 3].tolist(),
                         quat=_wxyz(T[:3, :3] @ R_OPTICAL_MUJOCO),
                         fovy=math.degrees(2.0 * math.atan(intr.height / 2.0 / intr.fy)))
    return spec
