"""Kinematic hand-object references for the sim cell: lift, push and rotate the cube (DexTrack's input format).

DexTrack tracks kinematic human-object trajectories retargeted to the robot. We have no human recordings here,
so a reference is *designed* the same way a retargeted one looks: an object trajectory (pose over time) and a
hand pose attached to the object during contact (a fixed ``T_object_palm``), turned into robot joints by
arm IK of the palm pose plus a hand pre-shape / grasp synergy. The output format
(:class:`~dexstack.policies.reference.ReferenceTrajectory`: ``q_rad`` + ``object_pose`` over time) is what a
human trajectory retargeted with ``dexstack.retarget`` would give, so tracking policies do not care which.

Phases (seconds, scaled by ``TaskSpec.speed``): approach from home to the pre-grasp pose in joint space (0-3),
reach the grasp pose (3-4), close the hand (4-4.8), move the object along its path (4.8-7.3), hold (7.3-8).

``training_specs`` samples task parameters for training; :data:`HELD_OUT` are fixed, unseen parameters
(different distances, heights, angles and start positions) for evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pinocchio as pin

from dexstack.policies.reference import ReferenceTrajectory
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics
from dexstack.transforms import make_transform, matrix_to_quat_xyzw, rpy_to_matrix

KINDS = ("lift", "push", "rotate")
RATE_HZ = 50.0
PHASES_S = (3.0, 4.0, 4.8, 7.3, 8.0)  # end of: approach, reach, close, manipulate, hold
CUBE_HALF_M = 0.025
IK_DAMPING, IK_POSTURE = 1e-3, 1e-4  # IK regularisation: step size (stay on the branch) and pull to home


@dataclass(frozen=True)
class TaskSpec:
    kind: str  # lift | push | rotate
    name: str = ""
    object_xy_m: tuple[float, float] = (0.5, 0.0)  # where the cube starts (on the table, yaw 0)
    lift_m: float = 0.10  # lift: height gained
    push_m: tuple[float, float] = (0.0, 0.10)  # push: displacement on the table
    rotate_rad: float = 0.6  # rotate: yaw turned while held just above the table
    speed: float = 1.0  # > 1: faster phases

    @property
    def duration_s(self) -> float:
        return PHASES_S[-1] / self.speed


# -------------------------------------------------------------------------------- hand poses and postures
# Allegro palm frame: fingers along +z, the palm's front face towards +x, the thumb on the +y side.
# Top grasp (lift, rotate): palm down (x_palm = -z_world), fingers pointing to the robot's right (z_palm = -y_world),
# thumb away from the robot (y_palm = +x_world): comfortably inside the Panda's workspace at the cube (fingers
# pointing away from the robot would need the elbow folded at its limit).
R_TOP = np.column_stack(([0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]))
# Push: fingers pointing down (z_palm = -z_world), the palm's front face pushing towards +y world.
R_PUSH = np.column_stack(([0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]))

# Cube centre in the palm frame at the grasp (m), and the pre-grasp offset (palm frame).
GRASP_CUBE_IN_PALM = {"top": np.array([0.042, 0.02, 0.042]), "push": np.array([0.036, 0.0, 0.115])}
PREGRASP_OFFSET_PALM = {"top": np.array([-0.08, 0.0, 0.0]), "push": np.array([-0.08, 0.0, -0.04])}

# Hand postures per finger (4 joints: abduction, 3 flexions); thumb: rotation, abduction, 2 flexions.
OPEN_FINGER, OPEN_THUMB = (0.0, -0.2, 0.6, 0.3), (1.4, 0.15, 0.7, -0.16)
CLOSED_FINGER, CLOSED_THUMB = (0.0, 0.1, 1.45, 1.1), (1.4, 0.15, 1.64, -0.16)
FLAT_FINGER, FLAT_THUMB = (0.0, 0.05, 0.05, 0.05), (0.4, 0.0, 0.0, 0.0)


def hand_posture(description: RobotDescription, finger: tuple, thumb: tuple) -> np.ndarray:
    """Allegro hand joints (profile order: index, middle, ring, thumb; 4 each) clipped into limits."""
    q = np.array(list(finger) * 3 + list(thumb), dtype=float)
    if q.size != len(description.hand_joints):
        raise ValueError(f"hand postures are written for a 16-joint Allegro hand, robot has "
                         f"{len(description.hand_joints)} hand joints")
    limits = description.limit_arrays(description.hand_joints)
    return np.clip(q, limits["lower"], limits["upper"])


# -------------------------------------------------------------------------------- IK
class PalmIK:
    """Damped least squares on the palm pose over the arm joints (hand joints fixed), warm-started, in limits."""

    def __init__(self, description: RobotDescription):
        self.d = description
        self.kin = Kinematics(description)
        self.palm = description.profile.hand.palm_link
        self.n_arm = len(description.arm_joints)
        limits = description.limit_arrays()
        self.lower, self.upper = limits["lower"][: self.n_arm], limits["upper"][: self.n_arm]
        self.home = description.home()[: self.n_arm]

    def solve(self, T_target: np.ndarray, q_seed: np.ndarray, iterations: int = 60) -> tuple[np.ndarray, float]:
        """Arm joints (the rest of ``q_seed`` kept) putting the palm at ``T_target``. Small steps from the previous
        solution with a weak pull towards home keep consecutive solves on one smooth branch."""
        q = np.array(q_seed, dtype=float)
        n = self.n_arm
        err = np.inf
        for _ in range(iterations):
            T = self.kin.frame_pose(q, self.palm)
            e_p = T_target[:3, 3] - T[:3, 3]
            e_r = pin.log3(T_target[:3, :3] @ T[:3, :3].T)
            err = float(np.linalg.norm(e_p) + 0.02 * np.linalg.norm(e_r))
            if np.linalg.norm(e_p) < 1e-4 and np.linalg.norm(e_r) < 1e-3:
                break
            J = self.kin.frame_jacobian(q, self.palm)[:, :n]
            J[3:] *= 0.2
            H = J.T @ J + IK_DAMPING * np.eye(n)
            dq = np.linalg.solve(H, J.T @ np.concatenate([e_p, 0.2 * e_r]) + IK_POSTURE * (self.home - q[:n]))
            dq *= min(1.0, 0.05 / max(np.abs(dq).max(), 1e-9))
            q[:n] = np.clip(q[:n] + dq, self.lower, self.upper)
        return q, err


    def solve_near(self, T_target: np.ndarray, q_home: np.ndarray, attempts: int = 24, seed: int = 0) -> np.ndarray:
        """The converged solution closest to ``q_home`` (largest joint change smallest) from several starts."""
        rng = np.random.default_rng(seed)
        best, best_cost, best_err = q_home, np.inf, np.inf
        for k in range(attempts):
            start = q_home.copy()
            if k:
                start[: self.n_arm] = np.clip(q_home[: self.n_arm] + rng.uniform(-1.5, 1.5, self.n_arm),
                                              self.lower, self.upper)
            q, err = self.solve(T_target, start, iterations=300)
            cost = np.abs(q[: self.n_arm] - q_home[: self.n_arm]).max()
            cost += 1000.0 * max(0.0, err - 1e-3)  # converged solutions first, then the closest to home
            if cost < best_cost:
                best, best_cost, best_err = q, cost, err
        if best_err > 5e-3:
            raise ValueError(f"pose out of reach (IK error {best_err:.3f})")
        return best


# -------------------------------------------------------------------------------- trajectories
def _smooth(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk time scaling of s in [0, 1]."""
    s = np.clip(s, 0.0, 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


def _object_path(spec: TaskSpec, u: float) -> np.ndarray:
    """T_base_object at manipulation progress u in [0, 1]."""
    x, y = spec.object_xy_m
    z = CUBE_HALF_M
    yaw = 0.0
    if spec.kind == "lift":
        z += spec.lift_m * u
    elif spec.kind == "push":
        x += spec.push_m[0] * u
        y += spec.push_m[1] * u
    elif spec.kind == "rotate":
        z += 0.03 * math.sin(math.pi * min(1.0, 1.25 * u)) if u < 0.8 else 0.0  # lift a little, turn, put down
        yaw = spec.rotate_rad * _smooth(np.array(min(1.0, u / 0.8))).item()
    else:
        raise ValueError(f"unknown task kind '{spec.kind}' (known: {KINDS})")
    return make_transform((x, y, z), rpy_to_matrix((0.0, 0.0, yaw)))


def make_reference(spec: TaskSpec, description: RobotDescription, rate_hz: float = RATE_HZ) -> ReferenceTrajectory:
    grasp = "push" if spec.kind == "push" else "top"
    R_palm = R_PUSH if grasp == "push" else R_TOP
    if grasp == "push":  # the palm faces the push direction
        direction = np.array([*spec.push_m, 0.0]) / max(np.linalg.norm(spec.push_m), 1e-9)
        yaw = math.atan2(direction[1], direction[0]) - math.pi / 2
        R_palm = rpy_to_matrix((0.0, 0.0, yaw)) @ R_palm
    c = GRASP_CUBE_IN_PALM[grasp]
    T_obj_palm = make_transform(-R_palm @ c, R_palm)  # palm in the object frame: the cube at c in the palm frame
    pre = make_transform(R_palm @ PREGRASP_OFFSET_PALM[grasp], np.eye(3))

    t = np.arange(0.0, spec.duration_s + 1e-9, 1.0 / rate_hz)
    a, b, cl, m, _ = (p / spec.speed for p in PHASES_S)
    ik = PalmIK(description)
    n_arm = len(description.arm_joints)
    if grasp == "push":
        h_open = h_closed = hand_posture(description, FLAT_FINGER, FLAT_THUMB)
    else:
        h_open, h_closed = hand_posture(description, OPEN_FINGER, OPEN_THUMB), hand_posture(description, CLOSED_FINGER,
                                                                                                CLOSED_THUMB)
    q_home = description.home()
    T_obj0 = _object_path(spec, 0.0)
    T_grasp0 = T_obj0 @ T_obj_palm
    T_pre = pre @ T_grasp0

    q_rows, pose_rows = [], []
    q_pre = ik.solve_near(T_pre, q_home)
    q = q_pre.copy()
    for ti in t:
        if ti <= a:  # approach in joint space (no Cartesian path through a wrist singularity), pre-shaping the hand
            s = _smooth(np.array(ti / a)).item()
            q_rows.append(np.concatenate([(1 - s) * q_home[:n_arm] + s * q_pre[:n_arm],
                                          (1 - s) * q_home[n_arm:] + s * h_open]))
            pose_rows.append(np.concatenate([T_obj0[:3, 3], matrix_to_quat_xyzw(T_obj0[:3, :3])]))
            continue
        if ti <= b:
            s = _smooth(np.array((ti - a) / (b - a))).item()
            T_target, hand, T_obj = _interp_pose(T_pre, T_grasp0, s), h_open, T_obj0
        elif ti <= cl:
            s = _smooth(np.array((ti - b) / (cl - b))).item()
            T_target, hand, T_obj = T_grasp0, (1 - s) * h_open + s * h_closed, T_obj0
        else:
            u = _smooth(np.array((ti - cl) / (m - cl))).item()
            T_obj = _object_path(spec, u)
            T_target, hand = T_obj @ T_obj_palm, h_closed
        q, _ = ik.solve(T_target, q)
        q[n_arm:] = hand
        q_rows.append(q.copy())
        xyz = T_obj[:3, 3]
        pose_rows.append(np.concatenate([xyz, matrix_to_quat_xyzw(T_obj[:3, :3])]))
    return ReferenceTrajectory(times_s=t, q_rad=np.array(q_rows), object_pose=np.array(pose_rows),
                               name=spec.name or spec.kind, kind=spec.kind, robot_profile=description.profile.name)


def _interp_pose(T0: np.ndarray, T1: np.ndarray, s: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (1 - s) * T0[:3, 3] + s * T1[:3, 3]
    T[:3, :3] = T0[:3, :3] @ pin.exp3(s * pin.log3(T0[:3, :3].T @ T1[:3, :3]))
    return T


# -------------------------------------------------------------------------------- task sets
BASE_SPECS = {
    "lift": TaskSpec("lift", "lift"),
    "push": TaskSpec("push", "push"),
    "rotate": TaskSpec("rotate", "rotate"),
}
HELD_OUT = (
    TaskSpec("lift", "heldout_lift_high", object_xy_m=(0.47, 0.04), lift_m=0.14),
    TaskSpec("lift", "heldout_lift_fast", object_xy_m=(0.53, -0.03), lift_m=0.08, speed=1.2),
    TaskSpec("push", "heldout_push_diag", object_xy_m=(0.48, -0.04), push_m=(0.06, 0.08)),
    TaskSpec("push", "heldout_push_short", object_xy_m=(0.52, 0.03), push_m=(0.0, 0.07)),
    TaskSpec("rotate", "heldout_rotate_neg", object_xy_m=(0.49, 0.03), rotate_rad=-0.5),
    TaskSpec("rotate", "heldout_rotate_big", object_xy_m=(0.51, -0.02), rotate_rad=0.8),
)


def training_specs(n: int, seed: int = 0) -> list[TaskSpec]:
    """``n`` random task parameters around the base tasks (held-out values are never drawn exactly)."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        xy = (0.5 + rng.uniform(-0.03, 0.03), rng.uniform(-0.04, 0.04))
        spec = replace(BASE_SPECS[kind], name=f"train_{kind}_{i}", object_xy_m=xy, speed=rng.uniform(0.9, 1.1))
        if kind == "lift":
            spec = replace(spec, lift_m=rng.uniform(0.06, 0.12))
        elif kind == "push":
            angle = rng.uniform(-0.6, 0.6)
            dist = rng.uniform(0.06, 0.10)
            spec = replace(spec, push_m=(dist * math.sin(angle), dist * math.cos(angle)))
        else:
            spec = replace(spec, rotate_rad=rng.choice([-1, 1]) * rng.uniform(0.3, 0.7))
        specs.append(spec)
    return specs


def validation_specs(n: int = 6) -> list[TaskSpec]:
    """Fixed references for checkpoint selection: drawn from the training distribution's ranges with their own
    seed, so they are neither training references (``training_specs`` with any seed draws other values almost
    surely; checked by a test) nor the held-out ones (which are only used to report)."""
    specs = [replace(s, name=s.name.replace("train_", "val_")) for s in training_specs(n, seed=7919)]
    held = {(s.kind, s.object_xy_m, s.lift_m, s.push_m, s.rotate_rad) for s in HELD_OUT}
    return [s for s in specs if (s.kind, s.object_xy_m, s.lift_m, s.push_m, s.rotate_rad) not in held]


def cached_reference(spec: TaskSpec, description: RobotDescription, cache_dir=None) -> ReferenceTrajectory:
    """:func:`make_reference` (IK, ~1 s) memoised on disk by the spec and the robot profile."""
    import hashlib  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from dexstack.policies.reference import load_reference, save_reference  # noqa: PLC0415

    root = Path(cache_dir or Path.home() / ".cache" / "dexstack" / "references")
    key = hashlib.sha1(f"{spec!r}|{description.profile.name}|{RATE_HZ}|{PHASES_S}".encode()).hexdigest()[:16]
    path = root / f"{spec.name or spec.kind}-{key}.npz"
    if path.is_file():
        try:
            return load_reference(path, description)
        except Exception:  # noqa: BLE001 (a corrupt cache entry is rebuilt)
            path.unlink(missing_ok=True)
    ref = make_reference(spec, description)
    save_reference(ref, description.joints, path)
    return ref


def main(argv: list[str] | None = None) -> int:
    """``python -m dexstack.policies.tracking.references``: (re)write policies/references/*.npz."""
    import argparse  # noqa: PLC0415

    from dexstack.paths import data_path  # noqa: PLC0415
    from dexstack.policies.reference import save_reference  # noqa: PLC0415
    from dexstack.robot.description import load_description  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default=str(data_path("policies", "references")), help="output folder")
    parser.add_argument("--profile", default="panda_allegro")
    args = parser.parse_args(argv)
    description = load_description(args.profile)
    for spec in (*BASE_SPECS.values(), *HELD_OUT):
        ref = make_reference(spec, description)
        path = save_reference(ref, description.joints, f"{args.out}/{ref.name}.npz")
        print(f"{path}: {ref.kind}, {ref.duration_s:.1f} s, {len(ref.times_s)} samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
