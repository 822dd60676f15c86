"""A small library of synthetic human functional grasps per object, made with the rendered human hand's kinematics.

No dataset of human grasps ships offline, so grasps are synthesised the way a person closes a hand on an object:
the hand (``dexstack.sim.human_hand``, 20 joints, MANO keypoints) is put at a grasp *kind*'s orientation relative
to the object, then every finger curls from ``open`` toward ``power`` until its skin touches the surface (signed
distance of the finger's capsule samples minus their radius <= 0) and stops there. The wrist pose is searched
on a small grid (palm gap x shift along the fingers x, for a top pinch, the hand turned about the object's z,
``KIND_YAWS_DEG``); among the poses with no penetration, nothing below the table and the thumb plus another finger
of the kind touching, the best scores on opposition first (the thumb's contact normal against another finger's,
:func:`opposition`: a thumb on the face next to the fingers' face pushes the object away when a robot hand closes)
then on touching fingers. Deterministic, ~1-10 s per grasp.

Kinds (object frame: z up as the object rests on the table; the robot stands on the object's -x side):

- ``side_power``: palm on the object's -x side facing +x, fingers wrapping around horizontally, thumb up;
  all five fingers and the palm may touch (a can, a bottle, a cup).
- ``top_precision``: palm above the object facing down, fingers pointing +x and 25 deg down; thumb, index and
  middle tips
  (a ball, an egg, a lemon, a small box).

An object's library (``config/grasps/<object>.yaml``, written by ``scripts/make_human_grasps.py``) holds every
kind that yields a grasp with the thumb and at least one other finger of the kind touching.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

from dexstack.config_loader import check_keys, read_yaml
from dexstack.paths import data_path
from dexstack.perception.objects import ObjectModel, load_object_model
from dexstack.retarget.keypoints import FINGERS
from dexstack.sim import human_hand as hh
from dexstack.transforms import matrix_to_quat_xyzw, pose_to_transform

KINDS = ("side_power", "top_precision")
KIND_FINGERS = {"side_power": ("thumb", "index", "middle", "ring", "pinky"),
                "top_precision": ("thumb", "index", "middle")}
CONTACT_GAP_M = 0.005  # a keypoint "touches" when the finger's skin around it is within this of the surface
_PENETRATION_TOL_M = 0.002
_TABLE_CLEARANCE_M = 0.003


def keypoint_radii_m(scale: float = 1.0) -> np.ndarray:
    """(21,) half-thickness of the rendered hand's skin around each keypoint (finger capsule radius; palm for
    the wrist and the MCPs' base), metres."""
    r = np.zeros(21)
    r[0] = 0.018
    r[list(FINGERS["thumb"])] = [hh._THUMB_RADIUS_M[0], *hh._THUMB_RADIUS_M]
    for name in ("index", "middle", "ring", "pinky"):
        rad = hh._RADIUS_M[name]
        r[list(FINGERS[name])] = [rad[0], rad[1], rad[2], rad[2]]
    return r * scale


@dataclass(frozen=True)
class HumanGrasp:
    """A human grasp of one object, in the object frame."""

    object_name: str
    kind: str
    T_object_H: np.ndarray  # 4x4 pose of the human hand frame H (wrist) in the object frame
    q_rad: np.ndarray  # human hand joints, ``human_hand.JOINTS`` order
    keypoints_object_m: np.ndarray  # (21, 3) MANO keypoints in the object frame
    contact_fingers: tuple[str, ...]  # fingers whose skin touches the surface

    def T_base_H(self, T_base_object: np.ndarray) -> np.ndarray:
        return np.asarray(T_base_object) @ self.T_object_H


def _kind_rotation(kind: str, yaw_rad: float = 0.0) -> np.ndarray:
    """R_object_H: columns are H's axes (x fingers, y pinky side, z out of the palm) in the object frame, the
    kind's orientation turned ``yaw_rad`` about the object's z (up)."""
    if kind == "side_power":
        x, z = np.array([0.0, -1.0, 0.0]), np.array([1.0, 0.0, 0.0])
    elif kind == "top_precision":  # fingers forward and 25 deg down: the robot's wrist stays clear of the table
        a = np.radians(55.0)
        x, z = np.array([np.cos(a), 0.0, -np.sin(a)]), np.array([np.sin(a), 0.0, np.cos(a)]) * -1.0
    else:
        raise ValueError(f"unknown grasp kind '{kind}': known kinds are {list(KINDS)}")
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Rz @ np.column_stack((x, np.cross(z, x), z))


# Hand turns about the object's z tried by the synthesis, per kind (degrees, preferred first). A top pinch with the
# fingers straight ahead puts the thumb on the side face next to the fingers' face (normals at 90 deg: nothing
# opposes the thumb, the object is pushed away when the hand closes, measured on the train objects); turned, the
# thumb and the fingers land on opposite faces.
KIND_YAWS_DEG = {"side_power": (0.0,), "top_precision": tuple(float(a) for a in range(-75, 76, 15))}
OPPOSITION_WEIGHT = {"side_power": 0.0, "top_precision": 4.0}


def opposition(model: ObjectModel, keypoints_object_m: np.ndarray, scale: float = 1.0,
               gap_m: float = CONTACT_GAP_M) -> float | None:
    """Smallest cosine between the thumb's contact normal and another touching finger's (-1: squeezing straight
    against each other, 0: on perpendicular faces); None without the thumb and another finger touching."""
    skin = _Skin(scale)
    d, n = model.signed_distance(skin.points(keypoints_object_m))
    gap = d - skin.radius
    normals = []
    for f in range(5):
        i = int(np.argmin(np.where(skin.finger == f, gap, np.inf)))
        normals.append(n[i] if gap[i] <= gap_m else None)
    if normals[0] is None or all(v is None for v in normals[1:]):
        return None
    return float(min(normals[0] @ v for v in normals[1:] if v is not None))


class _Skin:
    """Capsule samples of each finger (between consecutive keypoints) and of the palm, with radii."""

    def __init__(self, scale: float):
        radii = keypoint_radii_m(scale)
        self.index, self.weight, self.radius, self.finger = [], [], [], []
        for f, idx in enumerate(FINGERS.values()):
            for a, b in zip(idx[:-1], idx[1:]):
                for t in (0.0, 0.33, 0.67, 1.0):
                    self.index.append((a, b))
                    self.weight.append(t)
                    self.radius.append((1 - t) * radii[a] + t * radii[b])
                    self.finger.append(f)
        self.index, self.weight = np.array(self.index), np.array(self.weight)
        self.radius, self.finger = np.array(self.radius), np.array(self.finger)
        self.palm_radius = 0.015 * scale

    def points(self, kp: np.ndarray) -> np.ndarray:
        a, b = kp[self.index[:, 0]], kp[self.index[:, 1]]
        return a + self.weight[:, None] * (b - a)

    @staticmethod
    def palm_points(kp: np.ndarray) -> np.ndarray:
        base = kp[[0, 5, 9, 13, 17]]
        return np.vstack((base[1:], 0.5 * (base[0] + base[1:]), base.mean(0, keepdims=True)))


def touching_fingers(model: ObjectModel, keypoints_object_m: np.ndarray, scale: float = 1.0,
                     gap_m: float = CONTACT_GAP_M) -> tuple[tuple[str, ...], bool]:
    """(fingers whose skin is within ``gap_m`` of the surface, palm touching) for object-frame keypoints."""
    skin = _Skin(scale)
    d, _ = model.signed_distance(skin.points(keypoints_object_m))
    gap = d - skin.radius
    names = list(FINGERS)
    fingers = tuple(names[f] for f in range(5) if gap[skin.finger == f].min() <= gap_m)
    dp, _ = model.signed_distance(_Skin.palm_points(keypoints_object_m))
    return fingers, bool(dp.min() - skin.palm_radius <= gap_m)


def _close_fingers(kin: hh.HumanHandKinematics, model: ObjectModel, T_object_H: np.ndarray, skin: _Skin,
                   steps: int = 32) -> tuple[np.ndarray, np.ndarray, float]:
    """Curl each finger from open toward power until it touches; (q, keypoints, worst penetration in m)."""
    q_open, q_close = hh.POSES["open"], hh.POSES["power"]
    finger_of_joint = np.repeat(np.arange(5), 4)  # JOINTS: thumb 4, then 4 per finger
    s = np.zeros(5)
    done = np.zeros(5, bool)
    q = q_open.copy()
    kp = kin.keypoints(T_object_H, q)
    for k in range(1, steps + 1):
        s_try = np.where(done, s, k / steps)
        q_try = q_open + s_try[finger_of_joint] * (q_close - q_open)
        kp_try = kin.keypoints(T_object_H, q_try)
        d, _ = model.signed_distance(skin.points(kp_try))
        gap = d - skin.radius
        for f in range(5):
            if not done[f] and gap[skin.finger == f].min() <= 0.0:
                done[f] = True  # this finger stops where it was (touching within one step), the others go on
        s = np.where(done, s, k / steps)
        q = q_open + s[finger_of_joint] * (q_close - q_open)
        if done.all():
            break
    kp = kin.keypoints(T_object_H, q)
    d, _ = model.signed_distance(skin.points(kp))
    return q, kp, float(max(0.0, -(d - skin.radius).min()))


def synthesize_grasp(model: ObjectModel, kind: str, hand: hh.HumanHandConfig | None = None) -> HumanGrasp | None:
    """The best grasp of ``kind`` on ``model`` (see the module doc), or None if no candidate has the thumb and
    another finger of the kind touching without penetration."""
    config = hand or hh.HumanHandConfig(enabled=True)
    kin = hh.HumanHandKinematics(config)
    skin = _Skin(config.scale)
    surface, _ = model.surface_points(0.004)
    table_z = -float(model.extents_m[2]) / 2
    palm_centre_H = config.scale * np.array([0.045, 0.005, 0.0])
    wanted = KIND_FINGERS[kind]
    best, best_score = None, -np.inf
    rises = (0.0,) if kind == "side_power" else (0.0, 0.015, 0.03, 0.045)
    for yaw_deg, gap, shift, rise in itertools.product(
            KIND_YAWS_DEG[kind], (0.0, 0.01, 0.02, 0.035), (-0.045, -0.03, -0.015, 0.0, 0.015, 0.03), rises):
        R = _kind_rotation(kind, np.radians(yaw_deg))
        x_H, z_H = R[:, 0], R[:, 2]
        support = float((surface @ -z_H).max())  # how far the surface reaches toward the palm
        palm = -z_H * (support + skin.palm_radius + gap) + x_H * shift + np.array([0.0, 0.0, rise])
        if kind == "side_power":  # hold it low enough to wrap, high enough to clear the table
            palm[2] = min(palm[2], table_z + 0.055)
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = palm - R @ palm_centre_H
        q, kp, penetration = _close_fingers(kin, model, T, skin)
        if penetration > _PENETRATION_TOL_M:
            continue
        if (skin.points(kp)[:, 2] - skin.radius).min() < table_z + _TABLE_CLEARANCE_M:
            continue
        fingers, palm_touch = touching_fingers(model, kp, config.scale)
        good = [f for f in fingers if f in wanted]
        if "thumb" not in good or len(good) < 2:  # at least a pinch
            continue
        # Opposition dominates a pinch: a thumb that squeezes against no finger pushes the object away. A power
        # grasp wraps the fingers and the palm around the object instead (scored without it: its lifts held, and
        # the more opposed side wraps put the robot's wrist on the table).
        opp = opposition(model, kp, config.scale) if OPPOSITION_WEIGHT[kind] else None
        score = (len(good) + 0.5 * (palm_touch and kind == "side_power")
                 - OPPOSITION_WEIGHT[kind] * (1.0 if opp is None else opp)
                 - 2.0 * gap - 2.0 * rise - 0.3 * abs(yaw_deg) / 60.0)
        if score > best_score:
            best_score = score
            best = HumanGrasp(model.name, kind, T, q, kp, tuple(good))
    return best


GRASPS_FOLDER = "config/grasps"


def grasp_to_dict(grasp: HumanGrasp) -> dict:
    """The YAML form of a grasp (``config/grasps/<object>.yaml`` entries); keypoints are recomputed on load."""
    return {"kind": grasp.kind,
            "xyz_m": [round(float(v), 6) for v in grasp.T_object_H[:3, 3]],
            "quat_xyzw": [round(float(v), 8) for v in matrix_to_quat_xyzw(grasp.T_object_H[:3, :3])],
            "q_rad": [round(float(v), 6) for v in grasp.q_rad],
            "contact_fingers": list(grasp.contact_fingers)}


@cache
def library(object_name: str) -> tuple[HumanGrasp, ...]:
    """The human grasps of ``object_name``: ``config/grasps/<object_name>.yaml`` (written by
    ``scripts/make_human_grasps.py`` from :func:`synthesize_grasp`). Unknown object: ObjectConfigError listing the
    known ones; an object without a grasp file: ValueError."""
    model = load_object_model(object_name)
    path = data_path(*GRASPS_FOLDER.split("/"), f"{model.name}.yaml")
    if not path.is_file():
        raise ValueError(f"object '{model.name}' has no human grasp library ({path} is missing; "
                         "run scripts/make_human_grasps.py)")
    raw = check_keys(read_yaml(path), ("object", "grasps"), str(path))
    kin = hh.HumanHandKinematics(hh.HumanHandConfig(enabled=True))
    out = []
    for i, entry in enumerate(raw.get("grasps") or ()):
        check_keys(entry, ("kind", "xyz_m", "quat_xyzw", "q_rad", "contact_fingers"), str(path), f"grasps[{i}]")
        if entry["kind"] not in KINDS:
            raise ValueError(f"{path}: grasps[{i}].kind '{entry['kind']}' is not one of {list(KINDS)}")
        T = pose_to_transform(entry["xyz_m"], entry["quat_xyzw"])
        q = np.asarray(entry["q_rad"], dtype=float)
        if q.shape != (len(hh.JOINTS),):
            raise ValueError(f"{path}: grasps[{i}].q_rad needs {len(hh.JOINTS)} values")
        out.append(HumanGrasp(model.name, entry["kind"], T, q, kin.keypoints(T, q), tuple(entry["contact_fingers"])))
    return tuple(out)


def human_grasp(object_name: str, kind: str | None = None) -> HumanGrasp:
    """One grasp of the library (``kind`` or the first); ValueError listing the kinds that exist otherwise."""
    grasps = library(object_name)
    for g in grasps:
        if kind is None or g.kind == kind:
            return g
    raise ValueError(f"object '{object_name}' has no '{kind}' grasp in the library: it has "
                     f"{[g.kind for g in grasps]}")
