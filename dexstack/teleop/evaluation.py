"""Visual teleoperation judged against the ground truth: figures and a pass/fail verdict. No ROS imports.

What a run recorded (:class:`VisualTeleopRecord`): what ``hand_pose`` published per camera frame, the rendered
hand's true keypoints (``/dexstack/sim/hand_keypoints_gt``), which camera frames reached the drivers (the arm
command's stamp and the hand command's mirror stamp, see ``dexstack/nodes/safety_monitor.py``) and when, and the
measured joint states. :func:`evaluate` turns it into the figures of ``bench/visual_teleop.py`` plus whether the robot
*followed the hand*: the robot's palm and fingers are compared with where teleoperation driven by the
ground-truth keypoints would have put them:

- palm: a :class:`~dexstack.retarget.arm.WristMapper` (teleop's own mapping) engaged with the true hand frame and
  the measured palm at the start of each tracked segment (teleop re-engages after the hand was lost), then fed the
  true hand frame of every frame that reached the driver; its palm position vs the measured palm (FK) ``lag_s``
  later (the lag that fits best within ``max_lag_s``: the safety monitor limits velocity, so the robot trails);
- fingers: retargeting (teleop's config and method) of the true keypoints vs the measured hand joints, as fingertip
  positions in the palm frame.

:func:`verdict` cannot pass when nothing moved: the true hand must have moved the expected palm by
``min_expected_palm_travel_mm`` and the measured palm must have covered ``min_palm_travel_ratio`` of that, besides
the error bounds. Thresholds are loose (a loaded 2-core machine runs the live loop at ~10 Hz); the benchmark's
targets are stricter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dexstack.perception.hand import FINGERTIPS
from dexstack.retarget import HandRetargeter, KeypointError, WristMapper, hand_frame_from_keypoints
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics

MARGIN_PX = 5.0  # a ground-truth hand is "in view" when all 21 points are this far inside the image


@dataclass
class VisualTeleopRecord:
    """One run, every time on the camera's clock (stamps in ns, arrivals in s)."""

    keypoints: dict[int, np.ndarray | None]  # camera stamp -> hand_pose's (21, 3) base-frame keypoints, None: no hand
    gt_stamps_ns: np.ndarray  # (M,) when sim_hand placed the hand
    gt_keypoints: np.ndarray  # (M, 21, 3) true keypoints (joint centres), base frame
    arm_driver: dict[int, float]  # camera stamp carried by an arm driver command -> its first arrival (s)
    hand_driver: dict[int, float]  # same for the hand driver command (its stamped mirror)
    state_times_s: np.ndarray  # (N,) arrivals of /joint_states
    state_q: np.ndarray  # (N, n_joints) description order

    def save(self, path: Path) -> None:
        stamps = np.array(sorted(self.keypoints), dtype=np.int64)
        detected = np.array([self.keypoints[s] is not None for s in stamps], dtype=bool)
        kp = np.array([self.keypoints[s] if self.keypoints[s] is not None else np.full((21, 3), np.nan)
                       for s in stamps]).reshape(-1, 21, 3)
        arm, hand = sorted(self.arm_driver), sorted(self.hand_driver)  # ns stamps stay int64 (exact)
        np.savez_compressed(path, kp_stamps_ns=stamps, kp_detected=detected, kp=kp,
                            gt_stamps_ns=self.gt_stamps_ns, gt_keypoints=self.gt_keypoints,
                            arm_stamps_ns=np.array(arm, dtype=np.int64),
                            arm_arrival_s=np.array([self.arm_driver[s] for s in arm], dtype=float),
                            hand_stamps_ns=np.array(hand, dtype=np.int64),
                            hand_arrival_s=np.array([self.hand_driver[s] for s in hand], dtype=float),
                            state_times_s=self.state_times_s, state_q=self.state_q)

    @classmethod
    def load(cls, path: Path) -> VisualTeleopRecord:
        z = np.load(path)
        keypoints = {int(s): (k if d else None) for s, d, k in zip(z["kp_stamps_ns"], z["kp_detected"], z["kp"])}
        return cls(keypoints, z["gt_stamps_ns"], z["gt_keypoints"],
                   dict(zip(map(int, z["arm_stamps_ns"]), map(float, z["arm_arrival_s"]))),
                   dict(zip(map(int, z["hand_stamps_ns"]), map(float, z["hand_arrival_s"]))),
                   z["state_times_s"], z["state_q"])


@dataclass(frozen=True)
class VisualTeleopCriteria:
    min_frames_in_view: int = 30
    min_detection_rate: float = 0.6
    max_keypoint_err_mm_median: float = 30.0
    min_traced_commands: int = 20  # driver commands that name their camera frame (arm and hand each)
    min_expected_palm_travel_mm: float = 30.0  # the true hand moved the (expected) robot palm at least this much
    min_palm_travel_ratio: float = 0.5  # measured palm travel / expected palm travel
    max_palm_err_mm_median: float = 50.0
    max_palm_err_to_hold: float = 0.7  # palm error / the error of a palm that stayed where each segment began
    max_fingertip_err_mm_median: float = 50.0
    max_fingertip_err_to_hold: float = 0.8  # fingertip error / the error of a hand that kept its first pose
    min_hand_travel_rad: float = 0.2  # some hand joint moved at least this much while tracked

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite value >= 0, got {value}")


@dataclass(frozen=True)
class EvaluationConfig:
    retarget_config: str = "allegro_right"
    method: str = "dexpilot"
    position_scale: float = 1.0
    segment_gap_s: float = 0.3  # teleop's hand_lost_timeout_s: a longer gap re-engages (new palm reference)
    max_lag_s: float = 1.0
    fingertip_delay_s: float = 0.1  # measured hand joints this long after the frame (the hand servo's lag)
    lags_s: tuple[float, ...] = field(default=tuple(np.round(np.arange(0.0, 1.01, 0.05), 2)))


def in_view(points_base_m: np.ndarray, T_base_camera: np.ndarray, camera) -> np.ndarray:
    """(..., 21, 3) -> (...) True where all 21 points project inside the image (``MARGIN_PX`` margin)."""
    T_cam_base = np.linalg.inv(T_base_camera)
    p = points_base_m @ T_cam_base[:3, :3].T + T_cam_base[:3, 3]
    z = np.where(p[..., 2] > 1e-6, p[..., 2], 1e-6)
    u = camera.fx * p[..., 0] / z + camera.cx
    v = camera.fy * p[..., 1] / z + camera.cy
    ok = ((p[..., 2] > 0.1) & (u >= MARGIN_PX) & (u < camera.width - MARGIN_PX)
          & (v >= MARGIN_PX) & (v < camera.height - MARGIN_PX))
    return ok.all(axis=-1)


def tracked_segments(stamps_ns: list[int], gap_s: float) -> list[list[int]]:
    """Sorted stamps split where consecutive ones are more than ``gap_s`` apart (teleop lost the hand there)."""
    out: list[list[int]] = []
    for s in stamps_ns:
        if out and (s - out[-1][-1]) * 1e-9 <= gap_s:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def _state_at(record: VisualTeleopRecord, t_s: float) -> np.ndarray | None:
    k = int(np.searchsorted(record.state_times_s, t_s))
    return record.state_q[k] if k < len(record.state_times_s) else None


def _pct(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def evaluate(record: VisualTeleopRecord, description: RobotDescription, T_base_camera: np.ndarray, camera,
             config: EvaluationConfig | None = None) -> dict:
    """The figures of one run (see the module docstring); NaN where there was nothing to measure."""
    config = config or EvaluationConfig()
    out: dict = {}
    gt_t = np.asarray(record.gt_stamps_ns)

    def truth(stamp_ns: int) -> np.ndarray | None:  # the hand as it was when that frame was captured
        k = int(np.searchsorted(gt_t, stamp_ns, side="right")) - 1
        return record.gt_keypoints[k] if k >= 0 else None

    # Perception.
    answered = [s for s in sorted(record.keypoints) if truth(s) is not None]
    view = {s: bool(in_view(truth(s), T_base_camera, camera)) for s in answered}
    in_view_answered = [s for s in answered if view[s]]
    detected = [s for s in in_view_answered if record.keypoints[s] is not None]
    errors = np.concatenate([np.linalg.norm(record.keypoints[s] - truth(s), axis=1) for s in detected]) \
        if detected else np.zeros(0)
    out.update(frames_answered=len(answered), frames_in_view=len(in_view_answered),
               detection_rate=len(detected) / len(in_view_answered) if in_view_answered else float("nan"),
               keypoint_err_mm_median=1000 * _pct(errors, 50), keypoint_err_mm_p90=1000 * _pct(errors, 90))

    # The loop: camera frames that reached the drivers, how fast and how late.
    arm = sorted(s for s in record.arm_driver if s in record.keypoints)
    hand = sorted(s for s in record.hand_driver if s in record.keypoints)
    segments = tracked_segments(arm, config.segment_gap_s)
    span_s = sum((seg[-1] - seg[0]) * 1e-9 for seg in segments)
    out.update(
        traced_arm_commands=len(arm), traced_hand_commands=len(hand), tracked_segments=len(segments),
        loop_hz=sum(len(seg) - 1 for seg in segments) / span_s if span_s > 0 else 0.0,
        latency_ms_p50=1000 * _pct([record.arm_driver[s] - s * 1e-9 for s in arm], 50),
        latency_ms_p99=1000 * _pct([record.arm_driver[s] - s * 1e-9 for s in arm], 99),
        hand_latency_ms_p50=1000 * _pct([record.hand_driver[s] - s * 1e-9 for s in hand], 50),
        hand_latency_ms_p99=1000 * _pct([record.hand_driver[s] - s * 1e-9 for s in hand], 99))

    # Does the robot follow? Palm vs teleop-of-the-truth, fingertips vs retargeting-of-the-truth.
    retargeter = HandRetargeter.from_file(config.retarget_config, config.method, description)
    kinematics = Kinematics(description)
    palm = description.profile.hand.palm_link
    n_arm = len(description.arm_joints)
    from dexstack.retarget.arm import WristMapperConfig

    expected, held = {}, {}  # stamp -> expected palm position; -> the palm where its segment started
    for seg in segments:
        q0 = _state_at(record, record.arm_driver[seg[0]])
        kp0 = truth(seg[0])
        if q0 is None or kp0 is None:
            continue
        mapper = WristMapper(retargeter.T_root_H, WristMapperConfig(position_scale=config.position_scale))
        try:
            start = mapper.engage(hand_frame_from_keypoints(kp0), kinematics.frame_pose(q0, palm))[:3, 3]
            for s in seg[1:]:  # the first frame is the reference itself (no error by construction)
                expected[s] = mapper.update(hand_frame_from_keypoints(truth(s)))[:3, 3]
                held[s] = start
        except KeypointError:
            continue
    best = (float("inf"), float("nan"), np.zeros(0))
    for lag in config.lags_s:
        if lag > config.max_lag_s:
            continue
        errs, measured = [], []
        for s, p in expected.items():
            q = _state_at(record, s * 1e-9 + lag)
            if q is None:
                continue
            p_meas = kinematics.frame_pose(q, palm)[:3, 3]
            errs.append(np.linalg.norm(p_meas - p))
            measured.append(p_meas)
        if errs and np.median(errs) < best[0]:
            best = (float(np.median(errs)), float(lag), np.array(measured))
    exp_points = np.array(list(expected.values())).reshape(-1, 3)
    out["expected_palm_travel_mm"] = 1000 * float(np.linalg.norm(np.ptp(exp_points, axis=0))) if len(exp_points) \
        else 0.0
    out["palm_travel_mm"] = 1000 * float(np.linalg.norm(np.ptp(best[2], axis=0))) if len(best[2]) else 0.0
    out["palm_err_mm_median"] = 1000 * best[0] if np.isfinite(best[0]) else float("nan")
    out["palm_lag_s"] = best[1]
    # What a robot that never moved would score: the errors above must be well below these.
    out["palm_hold_err_mm_median"] = 1000 * _pct([np.linalg.norm(expected[s] - held[s]) for s in expected], 50)

    links = [retargeter.config.keypoint_links[i] for i in FINGERTIPS if retargeter.config.keypoint_links[i]]
    fingertip, fingertip_hold, q_hand = [], [], []
    q_start = _state_at(record, record.hand_driver[hand[0]]) if hand else None
    for s in hand:
        kp, q = truth(s), _state_at(record, s * 1e-9 + config.fingertip_delay_s)
        if kp is None or q is None or not view.get(s, False):
            continue
        T = hand_frame_from_keypoints(kp)
        q_ref = retargeter.retarget((kp - T[:3, 3]) @ T[:3, :3])
        p_ref = retargeter.hand.link_positions(q_ref, links)
        fingertip.extend(np.linalg.norm(p_ref - retargeter.hand.link_positions(q[n_arm:], links), axis=1))
        fingertip_hold.extend(np.linalg.norm(p_ref - retargeter.hand.link_positions(q_start[n_arm:], links), axis=1))
        q_hand.append(q[n_arm:])
    out["fingertip_err_mm_median"] = 1000 * _pct(fingertip, 50)
    out["fingertip_hold_err_mm_median"] = 1000 * _pct(fingertip_hold, 50)
    out["hand_travel_rad"] = float(np.ptp(np.array(q_hand), axis=0).max()) if q_hand else 0.0
    return out


def verdict(figures: dict, criteria: VisualTeleopCriteria | None = None) -> list[str]:
    """The reasons the run failed (empty: passed). NaN figures fail their check."""
    c = criteria or VisualTeleopCriteria()
    f = figures
    reasons = []

    def check(ok: bool, reason: str) -> None:
        if not ok:
            reasons.append(reason)

    check(f["frames_in_view"] >= c.min_frames_in_view,
          f"{f['frames_in_view']} frames with the true hand in view (need {c.min_frames_in_view})")
    check(f["detection_rate"] >= c.min_detection_rate,
          f"hand detected in {f['detection_rate']:.2f} of the frames it was in view (need {c.min_detection_rate})")
    check(f["keypoint_err_mm_median"] <= c.max_keypoint_err_mm_median,
          f"keypoint error median {f['keypoint_err_mm_median']:.1f} mm (max {c.max_keypoint_err_mm_median})")
    check(min(f["traced_arm_commands"], f["traced_hand_commands"]) >= c.min_traced_commands,
          f"{f['traced_arm_commands']} arm / {f['traced_hand_commands']} hand driver commands named their camera "
          f"frame (need {c.min_traced_commands})")
    check(f["expected_palm_travel_mm"] >= c.min_expected_palm_travel_mm,
          f"the true hand moved the expected palm by {f['expected_palm_travel_mm']:.0f} mm only (need "
          f"{c.min_expected_palm_travel_mm}): nothing to judge")
    check(f["palm_travel_mm"] >= c.min_palm_travel_ratio * f["expected_palm_travel_mm"],
          f"the robot palm moved {f['palm_travel_mm']:.0f} mm where following the true hand moves it "
          f"{f['expected_palm_travel_mm']:.0f} mm (need {c.min_palm_travel_ratio:.0%})")
    check(f["palm_err_mm_median"] <= c.max_palm_err_mm_median,
          f"palm {f['palm_err_mm_median']:.1f} mm (median) from teleop of the true hand (max "
          f"{c.max_palm_err_mm_median})")
    check(f["palm_err_mm_median"] <= c.max_palm_err_to_hold * f["palm_hold_err_mm_median"],
          f"palm {f['palm_err_mm_median']:.1f} mm (median) from teleop of the true hand, where a palm that never "
          f"moved is {f['palm_hold_err_mm_median']:.1f} mm (need below {c.max_palm_err_to_hold:.0%} of it)")
    check(f["fingertip_err_mm_median"] <= c.max_fingertip_err_to_hold * f["fingertip_hold_err_mm_median"],
          f"fingertips {f['fingertip_err_mm_median']:.1f} mm (median) from retargeting of the true hand, where a "
          f"hand that kept its first pose is {f['fingertip_hold_err_mm_median']:.1f} mm (need below "
          f"{c.max_fingertip_err_to_hold:.0%} of it)")
    check(f["fingertip_err_mm_median"] <= c.max_fingertip_err_mm_median,
          f"fingertips {f['fingertip_err_mm_median']:.1f} mm (median) from retargeting of the true hand (max "
          f"{c.max_fingertip_err_mm_median})")
    check(f["hand_travel_rad"] >= c.min_hand_travel_rad,
          f"the robot hand's joints moved {f['hand_travel_rad']:.3f} rad at most (need {c.min_hand_travel_rad})")
    return reasons
