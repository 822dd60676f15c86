"""Signed distance from object-frame points to a known object's surface (negative inside), with its gradient.

Used by grasp retargeting (non-penetration, contacts) and its tests. Exact for the primitives:

- box (half extents h): q = |p| - h;  d = |max(q, 0)| + min(max_i q_i, 0)
- cylinder (radius r, half height h, axis z): q = (|p_xy| - r, |p_z| - h), same formula in 2-D
- sphere: d = |p| - r

Meshes are convex by construction (``scripts/make_object_meshes.py``; MuJoCo collides their convex hull anyway):
d = max over faces (n_f . p - o_f). Exact inside and wherever the nearest feature is a face; outside near an edge
or a corner it is a lower bound (a conservative distance for non-penetration). Gradients: the maximising face's
normal for meshes; central differences (1e-5 m) for the primitives, exact to ~1e-6 away from the medial axis.
"""

from __future__ import annotations

import numpy as np

_EPS_M = 1e-5


def _box(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)


def _cylinder(p: np.ndarray, r: float, h: float) -> np.ndarray:
    q = np.stack((np.linalg.norm(p[..., :2], axis=-1) - r, np.abs(p[..., 2]) - h), axis=-1)
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)


def face_planes(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3) outward unit normals and (F,) offsets of a convex mesh's distinct face planes."""
    n = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    norm = np.linalg.norm(n, axis=1)
    keep = norm > 1e-12
    n = n[keep] / norm[keep, None]
    o = np.einsum("ij,ij->i", n, triangles[keep, 0])
    planes = np.unique(np.round(np.column_stack((n, o)), 9), axis=0)
    return planes[:, :3], planes[:, 3]


def _distance_fn(model):
    if model.shape == "box":
        half = np.asarray(model.size_m) / 2.0
        return lambda p: _box(p, half)
    if model.shape == "cylinder":
        r, h = model.size_m[0], model.size_m[1] / 2.0
        return lambda p: _cylinder(p, r, h)
    if model.shape == "sphere":
        r = model.size_m[0]
        return lambda p: np.linalg.norm(p, axis=-1) - r
    cache = model._surface_cache
    if "planes" not in cache:
        from dexstack.perception.objects import load_stl

        cache["planes"] = face_planes(load_stl(model.mesh_path))
    normals, offsets = cache["planes"]
    return lambda p: (p @ normals.T - offsets).max(axis=-1)


def signed_distance(model, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) signed distances (m) and (N, 3) unit gradients of object-frame ``points`` (N, 3)."""
    p = np.atleast_2d(np.asarray(points, dtype=float))
    f = _distance_fn(model)
    if model.shape == "mesh":  # max of planes: the gradient is the normal of the plane that attains it
        normals, offsets = model._surface_cache["planes"]
        values = p @ normals.T - offsets
        best = values.argmax(axis=1)
        return values[np.arange(len(p)), best], normals[best]
    d = f(p)
    offsets = np.vstack((np.eye(3), -np.eye(3))) * _EPS_M
    around = f(p[:, None, :] + offsets[None])  # (N, 6)
    grad = (around[:, :3] - around[:, 3:]) / (2 * _EPS_M)
    norm = np.linalg.norm(grad, axis=1, keepdims=True)
    grad = np.where(norm > 1e-9, grad / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0]))
    return d, grad
