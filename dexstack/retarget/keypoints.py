"""Human hand keypoints: the 21-point MANO/MediaPipe layout and the human hand frame ``H``.

Layout (indices, MediaPipe / OpenPose order, the order MANO-based trackers usually export; raw MANO joint order
differs and must be reordered): 0 wrist; thumb 1 CMC, 2 MCP, 3 IP, 4 tip; index 5 MCP, 6 PIP, 7 DIP, 8 tip;
middle 9-12; ring 13-16; pinky 17-20 (MCP, PIP, DIP, tip).

Human hand frame ``H`` (what :class:`~dexstack.retarget.hand.HandRetargeter` takes keypoints in, metres):

- origin at the wrist keypoint (0);
- ``+x`` from the wrist towards the middle-finger MCP (9), i.e. along the fingers of the flat hand;
- ``+z`` the palm normal, pointing *out of the palm* (the side the fingers curl to);
- ``+y = z x x``: for a right hand it points from the thumb side towards the pinky side.

Hand trackers give keypoints in their own frame (camera, MediaPipe "world" landmarks, a mocap frame):
:func:`to_hand_frame` re-expresses them in ``H``. Each robot hand's retargeting config says where ``H`` sits on the
robot hand (``human_frame``), which is the only rotation between the two.
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 21
WRIST = 0
THUMB = (1, 2, 3, 4)
INDEX = (5, 6, 7, 8)
MIDDLE = (9, 10, 11, 12)
RING = (13, 14, 15, 16)
PINKY = (17, 18, 19, 20)
FINGERS = {"thumb": THUMB, "index": INDEX, "middle": MIDDLE, "ring": RING, "pinky": PINKY}
FINGERTIPS = (4, 8, 12, 16, 20)


class KeypointError(ValueError):
    """Keypoints that cannot be retargeted (wrong shape, NaN/inf, degenerate hand)."""


def check_keypoints(keypoints_m: np.ndarray) -> np.ndarray:
    """``keypoints_m`` as a float (21, 3) array; :class:`KeypointError` saying what is wrong otherwise."""
    kp = np.asarray(keypoints_m, dtype=float)
    if kp.shape == (NUM_KEYPOINTS, 3) and np.isfinite(kp).all():
        return kp
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise KeypointError(f"expected keypoints of shape ({NUM_KEYPOINTS}, 3) in metres, got shape {kp.shape}")
    finite = np.isfinite(kp).all(axis=1)
    if not finite.all():
        raise KeypointError(f"keypoints {np.flatnonzero(~finite).tolist()} are NaN or infinite")
    return kp


def hand_frame_from_keypoints(keypoints_m: np.ndarray, side: str = "right") -> np.ndarray:
    """``T_src_H``: pose of the human hand frame ``H`` in the frame the keypoints are given in (4x4).

    Uses the wrist (0), index MCP (5), middle MCP (9) and pinky MCP (17): the palm plane is spanned by
    wrist->index MCP and wrist->pinky MCP; for a right hand their cross product points out of the palm.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    kp = check_keypoints(keypoints_m)
    wrist = kp[WRIST]
    normal = np.cross(kp[INDEX[0]] - wrist, kp[PINKY[0]] - wrist)
    if side == "left":
        normal = -normal
    forward = kp[MIDDLE[0]] - wrist
    nz = np.linalg.norm(normal)
    if nz < 1e-9:
        raise KeypointError("degenerate palm: wrist, index MCP and pinky MCP are collinear")
    z = normal / nz
    x = forward - z * (forward @ z)
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        raise KeypointError("degenerate palm: the middle MCP lies on the palm normal through the wrist")
    x /= nx
    T = np.eye(4)
    T[:3, :3] = np.column_stack((x, np.cross(z, x), z))
    T[:3, 3] = wrist
    return T


def to_hand_frame(keypoints_m: np.ndarray, side: str = "right") -> np.ndarray:
    """Keypoints (21, 3) re-expressed in the human hand frame ``H`` (metres, origin at the wrist)."""
    T = hand_frame_from_keypoints(keypoints_m, side)
    return (np.asarray(keypoints_m, dtype=float) - T[:3, 3]) @ T[:3, :3]
