"""Demo -> robot reference (Human2Sim2Robot's recipe on our cell).

1. Object trajectory from the *perceived* poses: predicted (stale) poses are gaps; outliers (a sample farther than
   ``outlier_m`` from the median of its neighbours) are dropped; gaps up to ``max_gap_s`` are bridged (linear
   position, normalised-lerp rotation), longer ones inside the used span refuse the demo; a zero-phase low-pass
   (Butterworth forward-backward, ``scipy.signal.filtfilt``) smooths without shifting the motion in time.
2. Segmentation: manipulation starts when the object starts moving (speed above ``onset_speed_m_s`` for at least
   ``onset_sustain_s``, traced back to where it first exceeded a third of it). A pose jump that does not last
   (perception re-locking) is not an onset.
3. Occlusion bias: before the onset the object is at rest by definition, so a change of its perceived position
   between the clean view (first ``clean_window_s``) and just before the onset (the hand already on it) is a bias of
   the occluded view; it is removed from the manipulation segment (the hand keeps the same hold) and reported.
4. Pre-manipulation hand pose: the last hand detection within ``pre_window_s`` before the onset; its wrist frame
   relative to the object (``T_object_H``) and the retargeted robot hand joints (the pre-shape).
5. Robot reference: the palm holds the object with the robot hand's own top grasp (``grasp="robot_top"``, the
   designed references' R_TOP; the human's hold is kept in the metadata) or keeps the human's orientation relative
   to the object (``grasp="human"``), up to the cube's 90-degree yaw symmetry (the reachable equivalent closest to
   R_TOP), placed so the object sits at the robot hand's grasp point (the robot's pre-shape is its open hand; the
   retargeted human one is kept in the metadata); approach (joint space from home) -> reach -> close ->
   manipulation (palm = T_object(t) T_object_palm, arm IK) -> hold. Checked: IK converged (reachable), joint
   limits, table clearance of every hand link.

Output: :class:`~dexstack.policies.reference.ReferenceTrajectory` with provenance in ``metadata``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from dexstack.demos.episode import DemoError, DemoTracks
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.transforms import (
    invert_transform,
    make_transform,
    matrix_to_quat_xyzw,
    quat_xyzw_to_matrix,
    rpy_to_matrix,
)


@dataclass(frozen=True)
class ConvertConfig:
    rate_hz: float = 50.0
    outlier_m: float = 0.02
    max_gap_s: float = 1.0
    cutoff_hz: float = 2.0  # zero-phase low-pass of the object trajectory
    onset_speed_m_s: float = 0.01  # a slow push (5 cm in 6 s) peaks at ~1.5 cm/s
    onset_rot_speed_rad_s: float = 0.08
    onset_sustain_s: float = 0.5
    clean_window_s: float = 0.6
    max_bias_m: float = 0.06
    pre_window_s: float = 2.5
    min_fresh_fraction: float = 0.3
    reach_s: float = 1.0
    close_s: float = 0.8
    hold_s: float = 0.5
    max_ik_error_m: float = 0.01
    table_z_m: float = 0.0
    palm_clearance_m: float = 0.02  # palm origin above the table top by at least this
    fingertip_depth_m: float = 0.06  # fingertip origins at most this below it (the designed references reach 4.8 cm:
    #                                  curled fingers closing under the cube's edge are stopped by the table in sim)
    max_palm_tilt_rad: float = 1.0  # the human palm must face down onto the object within this (top grasp)
    hand_retarget: str = "allegro_right"
    # the robot's hold on the object: "robot_top" (the Allegro's own top grasp of the designed references: R_TOP
    # with the cube at its grasp point, the equivalent under the cube's 90-degree yaw symmetry nearest R_TOP, i.e.
    # what track_cube was trained on) or "human" (the human's palm orientation relative to the object).
    # Measured (policies/track_demos/CARD.md): the human's hold re-expressed for the Allegro tilts the palm up to
    # 36 deg on pick-and-place demos and the closing hand misses the cube (replay and track_cube: 9-13 cm off);
    # the object's trajectory, which the reference is about, is the human's either way.
    grasp: str = "robot_top"
    # the robot hand while reaching: "open" (the grasp posture's open hand) or "retargeted" (the human's, retargeted)
    preshape: str = "open"
    kind: str = ""

    def __post_init__(self) -> None:
        for name in ("rate_hz", "max_gap_s", "cutoff_hz", "onset_speed_m_s", "onset_sustain_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.grasp not in ("robot_top", "human"):
            raise ValueError(f"grasp must be 'robot_top' or 'human', got {self.grasp!r}")
        if self.preshape not in ("open", "retargeted"):
            raise ValueError(f"preshape must be 'open' or 'retargeted', got {self.preshape!r}")


@dataclass
class Conversion:
    reference: ReferenceTrajectory
    metadata: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- object trajectory
def _continuous_quats(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(1, len(q)):
        if q[i] @ q[i - 1] < 0:
            q[i] = -q[i]
    return q


def reject_outliers(t_s: np.ndarray, xyz: np.ndarray, outlier_m: float, half_window: int = 2) -> np.ndarray:
    """Keep-mask: False where a sample is farther than ``outlier_m`` from the median of its +/- ``half_window``
    neighbours (itself excluded), i.e. a one- or two-sample spike; a step that lasts is kept."""
    n = len(t_s)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
        others = np.delete(xyz[lo:hi], i - lo, axis=0)
        if len(others) >= 2 and np.linalg.norm(xyz[i] - np.median(others, axis=0)) > outlier_m:
            keep[i] = False
    return keep


def resample(t_s: np.ndarray, pose: np.ndarray, grid: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Poses (xyz + quat xyzw) on ``grid``; :class:`DemoError` for a gap longer than ``max_gap_s`` inside it."""
    gaps = np.diff(t_s)
    inside = (t_s[1:] > grid[0]) & (t_s[:-1] < grid[-1])
    if np.any(inside & (gaps > max_gap_s)):
        k = int(np.flatnonzero(inside & (gaps > max_gap_s))[0])
        raise DemoError(f"object lost for {gaps[k]:.2f} s at t={t_s[k]:.2f} s (longest bridged gap {max_gap_s} s)")
    if grid[0] < t_s[0] - 1e-9 or grid[-1] > t_s[-1] + 1e-9:
        raise DemoError(f"object not seen over the whole demo ({t_s[0]:.2f}-{t_s[-1]:.2f} s)")
    out = np.empty((len(grid), 7))
    for j in range(3):
        out[:, j] = np.interp(grid, t_s, pose[:, j])
    q = _continuous_quats(pose[:, 3:].copy())
    for j in range(4):
        out[:, 3 + j] = np.interp(grid, t_s, q[:, j])
    out[:, 3:] /= np.linalg.norm(out[:, 3:], axis=1, keepdims=True)
    return out


def smooth(pose: np.ndarray, rate_hz: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase low-pass (2nd-order Butterworth run forward and backward): no delay, so the motion keeps its
    timing (a causal filter would shift the onset by its group delay)."""
    from scipy.signal import butter, filtfilt  # noqa: PLC0415

    if len(pose) < 16 or cutoff_hz >= rate_hz / 2:
        return pose.copy()
    b, a = butter(2, cutoff_hz / (rate_hz / 2))
    out = pose.copy()
    out[:, :3] = filtfilt(b, a, pose[:, :3], axis=0, padlen=min(15, len(pose) - 1))
    q = filtfilt(b, a, _continuous_quats(pose[:, 3:].copy()), axis=0, padlen=min(15, len(pose) - 1))
    out[:, 3:] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return out


def _speeds(pose: np.ndarray, rate_hz: float, baseline_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear (m/s) and angular (rad/s) speed by central differences over ``baseline_s`` (less noise than
    sample-to-sample differences; symmetric, so it does not shift the onset)."""
    h = max(1, int(round(0.5 * baseline_s * rate_hz)))
    n = len(pose)
    lo, hi = np.clip(np.arange(n) - h, 0, n - 1), np.clip(np.arange(n) + h, 0, n - 1)
    span = np.maximum(hi - lo, 1) / rate_hz
    v = np.linalg.norm(pose[hi, :3] - pose[lo, :3], axis=1) / span
    d = np.abs(np.sum(pose[hi, 3:] * pose[lo, 3:], axis=1)).clip(max=1.0)
    return v, 2 * np.arccos(d) / span


def motion_onset(pose: np.ndarray, rate_hz: float, speed_m_s: float, rot_speed_rad_s: float,
                 sustain_s: float, baseline_s: float = 0.3) -> int | None:
    """Index of the object's motion onset: speed above the threshold for at least ``sustain_s``, traced back along
    the rising edge to where it first exceeded a third of it. None if it never moves. A jump that does not last
    (perception re-locking) stays above the threshold only for ``baseline_s``: keep ``sustain_s`` longer."""
    v, w = _speeds(pose, rate_hz, baseline_s)
    moving = (v > speed_m_s) | (w > rot_speed_rad_s)
    need = max(1, int(round(sustain_s * rate_hz)))
    run = 0
    for i, m in enumerate(moving):
        run = run + 1 if m else 0
        if run >= need:
            k = i - need + 1
            # back along the rising edge only (to a third of the threshold or a local minimum): an earlier
            # perception jump next to the motion is not part of it
            while k > 0 and (v[k - 1] > speed_m_s / 3 or w[k - 1] > rot_speed_rad_s / 3) and \
                    v[k - 1] <= v[k] + 1e-9 and w[k - 1] <= w[k] + 1e-9:
                k -= 1
            return k
    return None


# ---------------------------------------------------------------------------------------------- conversion
def convert(tracks: DemoTracks, description, config: ConvertConfig | None = None) -> Conversion:
    """The robot reference of one demo; :class:`DemoError` with the reason for an unusable one."""
    c = config or ConvertConfig()
    start = time.monotonic()
    fresh = tracks.object_fresh
    if fresh.sum() < 5:
        raise DemoError(f"object never seen reliably ({int(fresh.sum())} measured poses)")
    t, pose = tracks.object_t_s[fresh], tracks.object_pose[fresh]
    keep = reject_outliers(t, pose[:, :3], c.outlier_m)
    t, pose = t[keep], pose[keep]
    grid = np.arange(t[0], t[-1] + 1e-9, 1.0 / c.rate_hz)
    if len(grid) < int(c.rate_hz):
        raise DemoError(f"object seen for only {t[-1] - t[0]:.2f} s")
    # Onset on the raw (bridged) track first: where the object starts moving bounds the part that must be seen.
    try:
        raw = resample(t, pose, grid, max_gap_s=np.inf)
    except DemoError as exc:
        raise DemoError(str(exc)) from None
    obj = smooth(raw, c.rate_hz, c.cutoff_hz)
    # onset on the bridged but unsmoothed track: smoothing would spread a perception jump at rest into a slow
    # motion that runs into the real one (the symmetric speed baseline keeps the timing)
    onset = motion_onset(raw, c.rate_hz, c.onset_speed_m_s, c.onset_rot_speed_rad_s, c.onset_sustain_s)
    if onset is None:
        raise DemoError("the object never moves (no manipulation to track)")
    onset_s = float(grid[onset])
    # Gaps: refused where they matter (from the clean window's end to the end of the demo).
    resample(t, pose, grid[(grid >= min(onset_s - 0.5, t[0] + c.clean_window_s))], c.max_gap_s)
    frac = len(t) / max(1.0, len(tracks.object_t_s))
    if frac < c.min_fresh_fraction:
        raise DemoError(f"only {100 * frac:.0f}% of the object poses were measurements")
    # Occlusion bias (the object is at rest before the onset).
    clean = obj[grid <= grid[0] + c.clean_window_s]
    pre = obj[(grid >= onset_s - 0.3) & (grid <= onset_s)]
    if grid[0] + c.clean_window_s > onset_s - 0.3:
        raise DemoError(f"the object moves {onset_s:.2f} s after it is first seen: no view of it at rest")
    p_clean = np.median(clean[:, :3], axis=0)
    bias = np.median(pre[:, :3], axis=0) - p_clean
    if np.linalg.norm(bias) > c.max_bias_m:
        raise DemoError(f"the perceived object jumped {100 * np.linalg.norm(bias):.1f} cm while at rest before the "
                        f"onset (limit {100 * c.max_bias_m:.0f} cm)")
    manip = obj[onset:].copy()
    manip[:, :3] -= bias
    T_obj0 = make_transform(p_clean, quat_xyzw_to_matrix(clean[len(clean) // 2, 3:]))
    manip[0, :3] = p_clean  # the segment starts where the object rests
    # Pre-manipulation hand.
    sel = (tracks.hand_t_s <= onset_s) & (tracks.hand_t_s >= onset_s - c.pre_window_s)
    if not np.any(sel):
        seen = f"last seen at t={tracks.hand_t_s[tracks.hand_t_s <= onset_s][-1]:.2f} s" if np.any(
            tracks.hand_t_s <= onset_s) else "never seen before it"
        raise DemoError(f"hand lost: not detected in the {c.pre_window_s} s before the object moved at "
                        f"t={onset_s:.2f} s ({seen})")
    k_hand = int(np.flatnonzero(sel)[-1])
    keypoints = tracks.hand_keypoints[k_hand]
    ref, meta = robot_reference(T_obj0, manip, keypoints, description, c)
    meta.update({
        "episode": tracks.episode, "episode_start_ns": int(tracks.t0_ns),
        "onset_s": round(onset_s, 3), "onset_stamp_ns": int(tracks.t0_ns + onset_s * 1e9),
        "end_s": round(float(grid[-1]), 3), "hand_stamp_s": round(float(tracks.hand_t_s[k_hand]), 3),
        "occlusion_bias_m": [round(float(b), 4) for b in bias], "outliers_dropped": int((~keep).sum()),
        "object_samples": int(len(tracks.object_t_s)), "object_measured": int(fresh.sum()),
        "task": str(tracks.info.get("task", "")), "config": asdict(c),
        "convert_s": round(time.monotonic() - start, 3)})
    return Conversion(ref, meta)


def _interp_pose(T0: np.ndarray, T1: np.ndarray, s: float) -> np.ndarray:
    import pinocchio as pin  # noqa: PLC0415

    T = np.eye(4)
    T[:3, 3] = (1 - s) * T0[:3, 3] + s * T1[:3, 3]
    T[:3, :3] = T0[:3, :3] @ pin.exp3(s * pin.log3(T0[:3, :3].T @ T1[:3, :3]))
    return T


def robot_reference(T_obj0: np.ndarray, manip: np.ndarray, keypoints: np.ndarray, description,
                    c: ConvertConfig) -> tuple[ReferenceTrajectory, dict]:
    """Approach + reach + close + manipulation + hold for the robot, from the object's start pose, its manipulation
    segment (poses at ``c.rate_hz``) and the human hand keypoints (base frame) just before the onset."""
    from dexstack.retarget import HandRetargeter  # noqa: PLC0415
    from dexstack.retarget.keypoints import hand_frame_from_keypoints, to_hand_frame  # noqa: PLC0415

    retargeter = HandRetargeter.from_file(c.hand_retarget, None, description)
    T_base_H = hand_frame_from_keypoints(keypoints, "right")
    palm_down = float(np.arccos(np.clip(-T_base_H[2, 2], -1.0, 1.0)))
    if palm_down > c.max_palm_tilt_rad:
        raise DemoError(f"grasp not supported: the palm faces {math.degrees(palm_down):.0f} deg away from down "
                        f"(top grasps only, limit {math.degrees(c.max_palm_tilt_rad):.0f} deg)")
    preshape = retargeter.retarget(to_hand_frame(keypoints, "right"))
    return _robot_reference(T_obj0, manip, invert_transform(T_obj0) @ T_base_H, preshape, retargeter.T_root_H,
                            description, c)


def reconvert(ref: ReferenceTrajectory, description, config: ConvertConfig | None = None) -> Conversion:
    """The robot part of an already converted demo reference rebuilt with ``config`` (e.g. another ``grasp``), from
    what its metadata keeps (the human's hold ``T_object_H``, the retargeted pre-shape, the phase durations) and its
    object trajectory, which is kept sample for sample: no recording needed. Provenance is kept, ``reconverted``
    says from what."""
    from dexstack.retarget import HandRetargeter  # noqa: PLC0415

    meta = dict(ref.metadata or {})
    missing = [k for k in ("T_object_H", "retargeted_preshape_rad", "manipulation_s", "config") if k not in meta]
    if missing or ref.object_pose is None:
        raise DemoError(f"reference '{ref.name}' was not made by dexstack-demo2ref (metadata lacks {missing})")
    old = meta["config"]
    c = config or ConvertConfig()
    # the object trajectory's settings and the phase durations stay the conversion's; the robot part's are new
    robot_part = ("max_ik_error_m", "table_z_m", "palm_clearance_m", "fingertip_depth_m", "hand_retarget", "grasp",
                  "preshape")
    kept = {k: v for k, v in old.items() if k in ConvertConfig.__dataclass_fields__ and k not in robot_part}
    c = ConvertConfig(**{**asdict(c), **kept})
    dt = 1.0 / c.rate_hz
    n = int(round(meta["manipulation_s"] / dt)) + 1
    approach_s = 0.6 * (c.reach_s + c.close_s + (n - 1) * dt + c.hold_s)
    # the samples the conversion wrote (the reference's sample nearest each manipulation time), not interpolations
    want = approach_s + c.reach_s + c.close_s + dt * np.arange(n)
    manip = ref.object_pose[np.abs(ref.times_s[None, :] - want[:, None]).argmin(axis=1)]
    T_obj0 = make_transform(ref.object_pose[0, :3], quat_xyzw_to_matrix(ref.object_pose[0, 3:]))
    T_obj_H = np.asarray(meta["T_object_H"], float)
    u, _, vt = np.linalg.svd(T_obj_H[:3, :3])  # stored rounded to 4 decimals: back to a rotation
    T_obj_H = make_transform(T_obj_H[:3, 3], u @ vt)
    retargeter = HandRetargeter.from_file(c.hand_retarget, None, description)
    out, extra = _robot_reference(T_obj0, manip, T_obj_H,
                                  np.asarray(meta["retargeted_preshape_rad"], float), retargeter.T_root_H,
                                  description, c)
    meta.update(extra)
    meta["config"] = asdict(c)
    meta["reconverted"] = {"from": ref.name, "grasp": old.get("grasp", "human")}
    return Conversion(replace(out, name=ref.name), meta)


def _robot_reference(T_obj0: np.ndarray, manip: np.ndarray, T_obj_H: np.ndarray, preshape: np.ndarray,
                     T_root_H: np.ndarray, description, c: ConvertConfig) -> tuple[ReferenceTrajectory, dict]:
    """The robot reference from the object's start pose, its manipulation segment, the human's hand frame relative
    to the object (``T_obj_H``) and its retargeted pre-shape."""
    from dexstack.policies.tracking.references import (  # noqa: PLC0415
        CLOSED_FINGER,
        CLOSED_THUMB,
        GRASP_CUBE_IN_PALM,
        OPEN_FINGER,
        OPEN_THUMB,
        PREGRASP_OFFSET_PALM,
        R_TOP,
        PalmIK,
        hand_posture,
    )
    from dexstack.retarget.arm import ArmIK, ArmIKConfig  # noqa: PLC0415
    from dexstack.robot.kinematics import Kinematics  # noqa: PLC0415

    T_base_H = T_obj0 @ T_obj_H
    T_obj_palm_h = T_obj_H @ invert_transform(T_root_H)
    # the hold to re-express: the human's, or the robot's own top grasp (in the object frame; the symmetry loop
    # below turns it about the cube's vertical axis)
    R_obj_hold = T_obj_palm_h[:3, :3] if c.grasp == "human" else T_obj0[:3, :3].T @ R_TOP
    q_closed = hand_posture(description, CLOSED_FINGER, CLOSED_THUMB)
    n_arm = len(description.arm_joints)
    q_home = description.home()
    ik = PalmIK(description)
    grasp_point = GRASP_CUBE_IN_PALM["top"]
    # The cube's 90-degree yaw symmetry: four equivalent holds; keep the reachable one closest to the robot hand's
    # own top grasp (R_TOP: measured to hold the cube; the same hold turned 180 deg dropped it in replay).
    from dexstack.transforms import rotation_angle_rad  # noqa: PLC0415

    best = None
    for k in range(4):
        R = rpy_to_matrix((0.0, 0.0, k * math.pi / 2)) @ R_obj_hold
        T_obj_palm = make_transform(-R @ grasp_point, R)
        T_grasp = T_obj0 @ T_obj_palm
        try:
            q = ik.solve_near(T_grasp, q_home, attempts=6, seed=k)
        except ValueError:
            continue
        cost = rotation_angle_rad(R_TOP.T @ T_grasp[:3, :3]) + 0.1 * float(np.abs(q[:n_arm] - q_home[:n_arm]).max())
        if best is None or cost < best[0]:
            best = (cost, k, T_obj_palm, q)
    if best is None:
        raise DemoError("unreachable: no arm configuration reaches the grasp at the object's start pose")
    _, k_sym, T_obj_palm, q_grasp = best
    T_grasp0 = T_obj0 @ T_obj_palm
    T_pre = make_transform(T_grasp0[:3, :3] @ PREGRASP_OFFSET_PALM["top"], np.eye(3)) @ T_grasp0
    try:
        q_pre = ik.solve_near(T_pre, q_grasp, attempts=4, seed=7)
    except ValueError:
        raise DemoError("unreachable: the pre-grasp pose above the object is out of the arm's reach") from None
    limits = description.limit_arrays()
    preshape = np.clip(preshape, limits["lower"][n_arm:], limits["upper"][n_arm:])
    human_preshape = preshape
    if c.preshape == "open":
        preshape = hand_posture(description, OPEN_FINGER, OPEN_THUMB)
    dt = 1.0 / c.rate_hz
    manip_s = (len(manip) - 1) * dt
    rest_s = c.reach_s + c.close_s + manip_s + c.hold_s
    approach_s = 0.6 * rest_s  # the approach ends at 3/8 of the reference (where training episodes start)
    times = np.arange(0.0, approach_s + rest_s + 1e-9, dt)
    arm = ArmIK(description, ArmIKConfig(max_iterations=30, posture_weight=1e-6))
    q_rows, pose_rows, ik_errors = [], [], []
    q = q_pre.copy()
    pose0 = np.concatenate([T_obj0[:3, 3], matrix_to_quat_xyzw(T_obj0[:3, :3])])
    for ti in times:
        if ti <= approach_s:
            s = float(_smooth(ti / approach_s))
            q_rows.append(np.concatenate([(1 - s) * q_home[:n_arm] + s * q_pre[:n_arm],
                                          (1 - s) * q_home[n_arm:] + s * preshape]))
            pose_rows.append(pose0)
            continue
        u = ti - approach_s
        if u <= c.reach_s:
            T_target, hand, p = _interp_pose(T_pre, T_grasp0, float(_smooth(u / c.reach_s))), preshape, pose0
        elif u <= c.reach_s + c.close_s:
            s = float(_smooth((u - c.reach_s) / c.close_s))
            T_target, hand, p = T_grasp0, (1 - s) * preshape + s * q_closed, pose0
        else:
            i = min(len(manip) - 1, int(round((u - c.reach_s - c.close_s) / dt)))
            p = manip[i]
            T_obj = make_transform(p[:3], quat_xyzw_to_matrix(p[3:]))
            T_target, hand = T_obj @ T_obj_palm, q_closed
        res = arm.solve(T_target, q[:n_arm])
        q = q.copy()
        q[:n_arm] = res.q_rad
        q[n_arm:] = hand
        ik_errors.append(res.position_error_m)
        if res.position_error_m > c.max_ik_error_m:
            raise DemoError(f"unreachable: the palm misses its target by {100 * res.position_error_m:.1f} cm at "
                            f"t={ti:.2f} s of the reference")
        q_rows.append(q.copy())
        pose_rows.append(np.asarray(p, dtype=float))
    q_rad = np.array(q_rows)
    if np.any(q_rad < limits["lower"] - 1e-6) or np.any(q_rad > limits["upper"] + 1e-6):
        raise DemoError("the reference leaves the joint limits")
    kin, rows = Kinematics(description), q_rad[:: max(1, int(c.rate_hz // 10))]
    palm_z = min_hand_height(kin, description, rows, palm_only=True)
    min_z = min_hand_height(kin, description, rows)
    if palm_z < c.table_z_m + c.palm_clearance_m:
        raise DemoError(f"table clearance: the palm comes {100 * (palm_z - c.table_z_m):.1f} cm from the table top "
                        f"(needs {100 * c.palm_clearance_m:.0f} cm)")
    if min_z < c.table_z_m - c.fingertip_depth_m:
        raise DemoError(f"table clearance: a fingertip goes {100 * (c.table_z_m - min_z):.1f} cm below the table top")
    ref = ReferenceTrajectory(times_s=times, q_rad=q_rad, object_pose=np.array(pose_rows),
                              kind=c.kind, robot_profile=description.profile.name)
    meta = {"symmetry_yaw_deg": 90 * k_sym, "approach_s": round(approach_s, 3),
            "manipulation_s": round(manip_s, 3), "max_ik_error_m": round(float(max(ik_errors)), 5),
            "min_fingertip_z_m": round(float(min_z), 4), "min_palm_z_m": round(float(palm_z), 4),
            "T_object_H": np.round(invert_transform(T_obj0) @ T_base_H, 4).tolist(),
            "T_object_palm": np.round(T_obj_palm, 4).tolist(), "preshape": c.preshape,
            "retargeted_preshape_rad": np.round(human_preshape, 4).tolist()}
    return ref, meta


def _smooth(s: float) -> float:
    s = min(1.0, max(0.0, s))
    return s ** 3 * (10 - 15 * s + 6 * s * s)


def min_hand_height(kin, description, q_rows: np.ndarray, palm_only: bool = False) -> float:
    """Lowest origin of the palm and fingertip links over ``q_rows`` (base frame z, m)."""
    names = [description.profile.hand.palm_link]
    if not palm_only:
        names += list(description.profile.hand.fingertip_links)
    return float(min(T[2, 3] for q in q_rows for T in kin.frame_poses(q, names).values()))
