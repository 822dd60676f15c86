"""dexstack-grasp-target: a robot grasp target from one RGB-D frame of a human grasp (FunGrasp, issue 12).

    dexstack-grasp-target --object can --sim --grasp side_power --out /tmp/can_grasp.yaml

A real frame: ``--color`` (PNG, RGB image) and ``--depth`` (16-bit PNG, aligned to color, ``depth_scale_m`` of the
calibration) with ``--calibration`` (``calibration/<cell>/camera.yaml``), or ``--topics``: the next frame of the
camera topics (``camera/camera/color/image_raw``, ``.../aligned_depth_to_color/image_raw`` and its camera_info;
localhost-only DDS unless ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set). ``--sim``: the frame is rendered in the
``tabletop_grasp`` cell, the human hand posed in a grasp of the object's library (``config/grasps``) on the object
resting on the table. The hand comes from the ``hand_pose`` core (MediaPipe + depth), the object's pose from the
``object_pose`` core (model fit; ``--object-color/--object-depth``: take it from a frame without the hand, as the
sim does with ``--object-frame-without-hand``), then functional retargeting. ``--check-reach`` also plans the arm
(IK, the safety gate's self/table collision check) for the pre-grasp, grasp and lift.

Prints one JSON line (the target, object frame) and writes ``--out`` (YAML). Bad input (unknown object, no hand,
no object, a hand not touching it, no non-penetrating or reachable grasp) exits 2 with the cause; nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def _read_png(path: str, depth: bool) -> np.ndarray:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"cannot read image '{path}'")
    if depth:
        if image.dtype != np.uint16 or image.ndim != 2:
            raise ValueError(f"depth image '{path}' must be a single-channel 16-bit PNG")
        return image
    if image.ndim != 3:
        raise ValueError(f"color image '{path}' must have 3 channels")
    return np.ascontiguousarray(image[:, :, 2::-1])  # OpenCV reads BGR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexstack-grasp-target", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--object", required=True, help="object name (config/objects/<name>.yaml)")
    parser.add_argument("--color", help="RGB PNG of the human grasp")
    parser.add_argument("--depth", help="16-bit depth PNG aligned to --color")
    parser.add_argument("--calibration", default="sim_tabletop", help="camera calibration name or YAML path")
    parser.add_argument("--object-color", help="RGB PNG to take the object's pose from (default: --color)")
    parser.add_argument("--object-depth", help="depth PNG to take the object's pose from (default: --depth)")
    parser.add_argument("--topics", action="store_true", help="take the next frame from the camera topics")
    parser.add_argument("--verify", action="store_true",
                        help="keep the first retargeting candidate that lifts the object in the sim grasp cell "
                             "(dexstack/grasp/verify.py; 2-30 s)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="--topics: wait this long for a frame")
    parser.add_argument("--sim", action="store_true", help="render the frame in the tabletop_grasp cell")
    parser.add_argument("--grasp", default=None, help="--sim: the library grasp kind (default: the first)")
    parser.add_argument("--object-frame-without-hand", action="store_true",
                        help="--sim: take the object's pose from a frame rendered before the hand arrives")
    parser.add_argument("--ground-truth-hand", action="store_true",
                        help="--sim: the rendered hand's exact keypoints instead of MediaPipe (diagnosis)")
    parser.add_argument("--contact-gap-m", type=float, default=0.02,
                        help="a detected keypoint within this of the surface (beyond the finger's radius) is a "
                             "contact (exact keypoints, --ground-truth-hand: the retargeter's own band)")
    parser.add_argument("--table-z-m", type=float, default=0.0, help="table height in the base frame")
    parser.add_argument("--check-reach", action="store_true", help="also plan the arm: refuse unreachable targets")
    parser.add_argument("--out", help="write the target here (YAML)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, GraspInputError, UnreachableError are these
        print(f"dexstack-grasp-target: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from dexstack.grasp.from_frame import GraspFromFrame, target_to_dict
    from dexstack.perception.objects import load_object_model

    model = load_object_model(args.object)  # unknown name: lists the known ones
    keypoints = object_frame = None
    if args.sim:
        os.environ.setdefault("MUJOCO_GL", "egl")
        from dexstack.grasp.human_grasps import human_grasp
        from dexstack.sim.camera import SimCamera
        from dexstack.sim.cell import SimCell
        from dexstack.sim.config import load_cell_config, with_object

        grasp = human_grasp(model.name, args.grasp)
        sim = SimCell(with_object(load_cell_config("tabletop_grasp"), model.name))
        camera = SimCamera(sim)
        calibration = sim.calibration
        if args.object_frame_without_hand:
            object_frame = camera.render()
        sim.set_human_hand(sim.object_pose() @ grasp.T_object_H, grasp.q_rad)
        image = camera.render()
        color, depth = image.color_rgb8, image.depth_mm
        if args.ground_truth_hand:
            keypoints = camera.keypoints()
        camera.close()
    elif args.topics:
        from dexstack.calibration import load_camera_calibration

        calibration = load_camera_calibration(args.calibration)
        color, depth, camera = _frame_from_topics(calibration, args.timeout_s)
        calibration = _with_intrinsics(calibration, camera)
    else:
        from dexstack.calibration import load_camera_calibration

        if not (args.color and args.depth):
            raise ValueError("give --color and --depth (one RGB-D frame), --topics or --sim")
        calibration = load_camera_calibration(args.calibration)
        color, depth = _read_png(args.color, False), _read_png(args.depth, True)
        if args.object_color or args.object_depth:
            if not (args.object_color and args.object_depth):
                raise ValueError("--object-color and --object-depth go together")
            from dexstack.sim.camera import RGBDImage

            object_frame = RGBDImage(0.0, _read_png(args.object_color, False), _read_png(args.object_depth, True))
    pipeline = GraspFromFrame(model, calibration.T_parent_camera, calibration.intrinsics,
                              calibration.depth_scale_m, contact_gap_m=args.contact_gap_m, verify=args.verify)
    try:
        result = pipeline.estimate(color, depth,
                                   None if object_frame is None else object_frame.color_rgb8,
                                   None if object_frame is None else object_frame.depth_mm,
                                   table_z_base_m=args.table_z_m, keypoints_base_m=keypoints)
    finally:
        pipeline.close()
    if args.check_reach:
        _check_reach(result)
    out = target_to_dict(result.target, result.T_base_object)
    if args.out:
        import yaml

        with open(args.out, "w") as f:
            yaml.safe_dump(out, f, sort_keys=False, default_flow_style=None, width=120)
    print(json.dumps(out))
    return 0


def _frame_from_topics(calibration, timeout_s: float):
    """(rgb, depth, camera model) of the first stamp-paired frame on the camera topics (localhost DDS only)."""
    import time

    from dexstack.rosenv import force_localhost_dds

    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ:  # a workstation that sets its own range keeps it
        force_localhost_dds()  # before rclpy loads: no discovery traffic leaves this machine
    import rclpy
    from rclpy.node import Node

    from dexstack.nodes.rgbd_input import COLOR_TOPIC, DEPTH_TOPIC, RgbdInput

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("grasp_target_cli", context=context)
        got: list = []
        RgbdInput(node, calibration, 0.02, lambda stamp, header, rgb, depth, camera: got.append((rgb, depth, camera)))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout_s
        while not got and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    if not got:
        raise ValueError(f"no RGB-D frame on {COLOR_TOPIC} + {DEPTH_TOPIC} within {timeout_s:.0f} s "
                         "(is the camera or sim_cell running, on this ROS_DOMAIN_ID?)")
    return got[0]


def _with_intrinsics(calibration, camera):
    import dataclasses

    return dataclasses.replace(calibration, intrinsics=camera)


def _check_reach(result) -> None:
    from dexstack.grasp.baseline import BaselineConfig, plan_arm
    from dexstack.retarget.arm import ArmIK, ArmIKConfig
    from dexstack.robot.description import load_description
    from dexstack.safety.gate import SafetyGate, load_safety_config

    description = load_description("panda_allegro")
    gate = SafetyGate(description, load_safety_config())
    ik = ArmIK(description, ArmIKConfig(max_iterations=200, posture_weight=1e-4))
    plan_arm(ik, result.target, result.T_base_object, description.home(description.arm_joints), 0.10,
             BaselineConfig(), lambda qa, qh: gate.collision_violation_m(np.concatenate((qa, qh))))


if __name__ == "__main__":
    sys.exit(main())
