"""Human-hand keypoints synthesised from the robot hand itself, so the right answer is known.

With no dataset or camera, test and benchmark sequences are made by moving the *robot* hand (smooth random joint
trajectories within its limits), taking the positions of the links that the config maps to each human keypoint
(``keypoint_links``), and expressing them in the human hand frame ``H`` shrunk by the config's ``scaling``. A
perfect retargeter returns fingertips exactly where the robot's were, so the fingertip error in mm is a real
accuracy measure. Keypoints without a robot analogue (the pinky of a four-finger hand) are extrapolated from the
two neighbouring fingers so the 21 points look like a hand; retargeting configs do not use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.retarget.config import HandRetargetConfig
from dexstack.retarget.hand_model import HandModel
from dexstack.retarget.keypoints import FINGERS, NUM_KEYPOINTS


@dataclass(frozen=True)
class SyntheticSequence:
    """``q_rad`` (T, n) robot joint positions (description order) and ``keypoints_m`` (T, 21, 3) in ``H``."""

    q_rad: np.ndarray
    keypoints_m: np.ndarray
    rate_hz: float


def smooth_joint_trajectory(lower_rad: np.ndarray, upper_rad: np.ndarray, n_frames: int, rate_hz: float = 30.0,
                            seed: int = 0, max_freq_hz: float = 0.4, margin: float = 0.05) -> np.ndarray:
    """(n_frames, n) joint positions: per joint a sum of 3 random sinusoids (0.05..max_freq_hz), spanning the range
    shrunk by ``margin`` (fraction) at both ends. Peak joint speeds ~ range * 2 pi f (a fast human hand)."""
    rng = np.random.default_rng(seed)
    lower, upper = np.asarray(lower_rad, float), np.asarray(upper_rad, float)
    n = len(lower)
    t = np.arange(n_frames)[:, None] / rate_hz
    wave = np.zeros((n_frames, n))
    for _ in range(3):
        freq = rng.uniform(0.05, max_freq_hz, n)
        phase = rng.uniform(0, 2 * np.pi, n)
        wave += rng.uniform(0.5, 1.0, n) * np.sin(2 * np.pi * freq * t + phase)
    wave /= np.abs(wave).max(axis=0).clip(min=1e-9)  # each joint spans its whole (shrunk) range
    mid, half = (lower + upper) / 2, (upper - lower) / 2 * (1 - 2 * margin)
    return mid + half * wave


class RobotHandKeypoints:
    """Keypoints (21, 3) in ``H`` of a robot hand configuration, through the config's ``keypoint_links``."""

    def __init__(self, config: HandRetargetConfig, hand: HandModel):
        if len(config.keypoint_links) != NUM_KEYPOINTS:
            raise ValueError(f"{config.name}: 'keypoint_links' (the robot analogue of each human keypoint) is "
                             "needed to synthesise keypoints")
        self.config, self.hand = config, hand
        self.present = [i for i, link in enumerate(config.keypoint_links) if link is not None]
        self.links = [config.keypoint_links[i] for i in self.present]
        for link in self.links:
            hand.frame_id(link)  # unknown link -> ValueError
        T_root_H = hand.link_pose(np.zeros(hand.n), config.human_frame.name)
        self._R, self._t = T_root_H[:3, :3], T_root_H[:3, 3]

    def __call__(self, q_rad: np.ndarray) -> np.ndarray:
        kp = np.full((NUM_KEYPOINTS, 3), np.nan)
        p_root = self.hand.link_positions(q_rad, self.links)
        kp[self.present] = (p_root - self._t) @ self._R / self.config.scaling
        names = list(FINGERS)
        for f, finger in enumerate(names):  # a missing finger: mirror its neighbour about the next one
            idx = np.array(FINGERS[finger])
            if np.isnan(kp[idx]).any():
                near, far = (FINGERS[names[f - 1]], FINGERS[names[f - 2]]) if f >= 2 else \
                            (FINGERS[names[f + 1]], FINGERS[names[f + 2]])
                kp[idx] = 2 * kp[list(near)] - kp[list(far)]
        if np.isnan(kp).any():
            raise ValueError(f"{self.config.name}: keypoints {np.flatnonzero(np.isnan(kp).any(1)).tolist()} have "
                             "no robot analogue and cannot be extrapolated")
        return kp


def synthetic_sequence(config: HandRetargetConfig, hand: HandModel, n_frames: int, rate_hz: float = 30.0,
                       seed: int = 0, max_freq_hz: float = 0.4) -> SyntheticSequence:
    """A smooth random robot hand motion and the human keypoints (in ``H``) it corresponds to."""
    q = smooth_joint_trajectory(hand.lower_rad, hand.upper_rad, n_frames, rate_hz, seed, max_freq_hz)
    to_kp = RobotHandKeypoints(config, hand)
    return SyntheticSequence(q_rad=q, keypoints_m=np.stack([to_kp(qi) for qi in q]), rate_hz=rate_hz)
