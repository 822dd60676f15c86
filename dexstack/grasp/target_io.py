"""Grasp targets as plain data: the inverse of :func:`dexstack.grasp.from_frame.target_to_dict` (what
``dexstack-grasp-target --out`` writes and the ``grasp_target`` node publishes on ``dexstack/grasp/target``),
checked strictly: a malformed target is a :class:`GraspTargetError` naming the field, never a half-read target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dexstack.retarget.functional import GraspTarget
from dexstack.transforms import quat_xyzw_to_matrix

REQUIRED = ("object", "T_object_palm", "q_hand_rad", "T_object_palm_pregrasp", "q_pregrasp_rad", "links",
            "link_positions_object_m", "contact_mask")
OPTIONAL = ("human_contact_fingers", "robot_contact_fingers", "contact_match", "max_penetration_m", "retarget_ms",
            "T_base_object", "stamp_s")


class GraspTargetError(ValueError):
    """A grasp target that cannot be used; the message names the problem."""


def _pose(value, key: str) -> np.ndarray:
    if not isinstance(value, dict) or set(value) != {"xyz_m", "quat_xyzw"}:
        raise GraspTargetError(f"grasp target '{key}' must be {{xyz_m: [3], quat_xyzw: [4]}}, got {value!r}")
    xyz, quat = np.asarray(value["xyz_m"], dtype=float), np.asarray(value["quat_xyzw"], dtype=float)
    if xyz.shape != (3,) or quat.shape != (4,) or not (np.isfinite(xyz).all() and np.isfinite(quat).all()):
        raise GraspTargetError(f"grasp target '{key}' must have 3 finite xyz_m and 4 finite quat_xyzw")
    if not 0.9 < np.linalg.norm(quat) < 1.1:
        raise GraspTargetError(f"grasp target '{key}' quaternion is not a unit quaternion: {quat.tolist()}")
    T = np.eye(4)
    T[:3, :3] = quat_xyzw_to_matrix(quat / np.linalg.norm(quat))
    T[:3, 3] = xyz
    return T


def target_from_dict(data: dict, n_hand: int) -> tuple[GraspTarget, np.ndarray | None]:
    """(target, T_base_object or None) from plain data; ``n_hand`` hand joints expected."""
    if not isinstance(data, dict):
        raise GraspTargetError(f"a grasp target is a mapping, got {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data]
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise GraspTargetError(f"grasp target: missing {missing}, unknown {unknown}")
    q = {k: np.asarray(data[k], dtype=float) for k in ("q_hand_rad", "q_pregrasp_rad")}
    for key, value in q.items():
        if value.shape != (n_hand,) or not np.isfinite(value).all():
            raise GraspTargetError(f"grasp target '{key}' must be {n_hand} finite joint positions")
    links = tuple(str(v) for v in data["links"])
    pos = np.asarray(data["link_positions_object_m"], dtype=float)
    mask = np.asarray(data["contact_mask"], dtype=bool)
    if pos.shape != (len(links), 3) or not np.isfinite(pos).all() or mask.shape != (len(links),):
        raise GraspTargetError(f"grasp target: {len(links)} links need as many positions [x, y, z] and mask values")
    if not mask.any():
        raise GraspTargetError("grasp target: no link should touch the object (empty contact_mask)")
    target = GraspTarget(
        object_name=str(data["object"]), T_object_palm=_pose(data["T_object_palm"], "T_object_palm"),
        q_hand_rad=q["q_hand_rad"], link_names=links, link_positions_object_m=pos, contact_mask=mask,
        T_object_palm_pregrasp=_pose(data["T_object_palm_pregrasp"], "T_object_palm_pregrasp"),
        q_pregrasp_rad=q["q_pregrasp_rad"], q_squeeze_rad=q["q_hand_rad"],
        human_contact_fingers=tuple(data.get("human_contact_fingers", ())),
        robot_contact_fingers=tuple(data.get("robot_contact_fingers", ())),
        contact_match=float(data.get("contact_match", 0.0)), max_penetration_m=float(data.get("max_penetration_m", 0)),
        retarget_ms=float(data.get("retarget_ms", 0.0)), iterations=0)
    T_base_object = _pose(data["T_base_object"], "T_base_object") if "T_base_object" in data else None
    return target, T_base_object


def read_target(source: str) -> dict:
    """A grasp target's plain data from its JSON text (``{...}``, as published) or a YAML/JSON file."""
    text = source.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraspTargetError(f"grasp target JSON does not parse: {exc}") from None
    path = Path(source).expanduser()
    if not path.is_file():
        raise GraspTargetError(f"grasp target file '{source}' does not exist")
    import yaml  # noqa: PLC0415

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GraspTargetError(f"grasp target file '{source}' does not parse: {exc}") from None
