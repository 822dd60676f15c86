"""AprilTag 36h11 detection (OpenCV ArUco), per-tag pose candidates (IPPE_SQUARE) and tag textures for the sim.

Corners are in ArUco order: top-left, top-right, bottom-right, bottom-left of the printed tag image, pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dexstack.camera_model import CameraModel

DICTIONARIES = {"tag36h11": cv2.aruco.DICT_APRILTAG_36h11}
# MuJoCo cube-map layout of the sim's object texture (3 rows x 4 columns): Up, Left, Front, Right, Back, Down.
CUBE_GRID_LAYOUT = ".U..LFRB.D.."


@dataclass(frozen=True, eq=False)
class TagDetection:
    id: int
    corners_px: np.ndarray  # (4, 2) ArUco order


@dataclass(frozen=True)
class TagDetectorConfig:
    family: str = "tag36h11"
    upsample: int = 2  # detect on an image scaled up by this factor: small tags (~20 px) need it
    corner_refinement: bool = True  # sub-pixel corners


class TagDetector:
    """Detects tags of one family in an RGB or grayscale image."""

    def __init__(self, config: TagDetectorConfig | None = None):
        self.config = config or TagDetectorConfig()
        if self.config.family not in DICTIONARIES:
            raise ValueError(f"tag family '{self.config.family}' is not one of {sorted(DICTIONARIES)}")
        if self.config.upsample < 1:
            raise ValueError("upsample must be >= 1")
        params = cv2.aruco.DetectorParameters()
        params.minMarkerPerimeterRate = 0.01  # tags down to ~10 px wide
        params.minCornerDistanceRate = 0.02
        params.minDistanceToBorder = 1
        params.polygonalApproxAccuracyRate = 0.05
        params.perspectiveRemovePixelPerCell = 8
        if self.config.corner_refinement:
            params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARIES[self.config.family])
        self._detector = cv2.aruco.ArucoDetector(dictionary, params)

    def detect(self, image: np.ndarray) -> list[TagDetection]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else np.asarray(image, np.uint8)
        s = int(self.config.upsample)
        if s > 1:
            gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        corners, ids, _ = self._detector.detectMarkers(gray)
        if ids is None:
            return []
        out = []
        for c, i in zip(corners, ids.ravel()):
            # Scaled image pixel centres: x_s = s * x + (s - 1) / 2  ->  x = (x_s - (s - 1) / 2) / s
            uv = (np.asarray(c, dtype=float).reshape(4, 2) - (s - 1) / 2.0) / s
            out.append(TagDetection(id=int(i), corners_px=uv))
        return out


def tag_pose_candidates(corners_px: np.ndarray, tag_size_m: float, camera: CameraModel
                        ) -> list[tuple[np.ndarray, float]]:
    """The (up to two) poses T_camera_tag of a square tag that explain its corners (IPPE_SQUARE), each with its
    RMS reprojection error in pixels, best first. A small or frontal tag is ambiguous: the second solution is
    the tag flipped about an axis in its plane, and can reproject almost as well."""
    s = tag_size_m / 2.0
    object_points = np.array([[-s, s, 0.0], [s, s, 0.0], [s, -s, 0.0], [-s, -s, 0.0]])
    n, rvecs, tvecs, errors = cv2.solvePnPGeneric(
        object_points, np.asarray(corners_px, dtype=np.float64).reshape(4, 1, 2), camera.K, camera.opencv_distortion(),
        flags=cv2.SOLVEPNP_IPPE_SQUARE)
    out = []
    for k in range(n):
        T = np.eye(4)
        T[:3, :3] = cv2.Rodrigues(rvecs[k])[0]
        T[:3, 3] = tvecs[k].ravel()
        out.append((T, float(np.ravel(errors)[k]) if errors is not None else float("nan")))
    out.sort(key=lambda c: c[1])
    return out


def tag_image(tag_id: int, side_px: int, family: str = "tag36h11") -> np.ndarray:
    """(side, side) uint8 image of a tag's black square (no white border)."""
    dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARIES[family])
    return cv2.aruco.generateImageMarker(dictionary, int(tag_id), int(side_px))


def cube_texture(face_tags: dict[str, int], face_px: int = 200, margin_px: int = 8,
                 family: str = "tag36h11") -> np.ndarray:
    """A (3 * face_px, 4 * face_px) grayscale cube map in :data:`CUBE_GRID_LAYOUT`: each face letter in
    ``face_tags`` gets that tag's black square centred on a white face with ``margin_px`` of white around it."""
    img = np.full((3 * face_px, 4 * face_px), 255, np.uint8)
    for k, face in enumerate(CUBE_GRID_LAYOUT):
        if face == "." or face not in face_tags:
            continue
        r, c = divmod(k, 4)
        img[r * face_px + margin_px:(r + 1) * face_px - margin_px,
            c * face_px + margin_px:(c + 1) * face_px - margin_px] = tag_image(face_tags[face],
                                                                              face_px - 2 * margin_px, family)
    return img
