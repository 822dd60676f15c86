#!/usr/bin/env python3
"""Write the shipped object meshes (config/objects/meshes/*.stl): convex solids of revolution and prisms.

Example: ``.venv/bin/python scripts/make_object_meshes.py`` (deterministic; rerun after changing a profile).

Every mesh is convex on purpose: MuJoCo collides a mesh geom through its convex hull, so a convex mesh is exactly
what the physics sees, and the retargeting's signed distance (to the mesh) agrees with the simulated contacts.
A solid of revolution is convex when its radius profile r(z) is a concave function of z. Object frame: the centre
of the bounding box, z up (the axis of revolution / prism), metres.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "config" / "objects" / "meshes"


def revolve(profile_rz: list[tuple[float, float]], segments: int = 48) -> np.ndarray:
    """(T, 3, 3) triangles of the solid swept by the (r, z) profile (bottom to top) about z, capped at both ends."""
    prof = np.asarray(profile_rz, dtype=float)
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    ring = [np.column_stack((r * np.cos(phi), r * np.sin(phi), np.full(segments, z))) for r, z in prof]
    tris = []
    for a, b in zip(ring[:-1], ring[1:]):
        for i in range(segments):
            j = (i + 1) % segments
            tris += [(a[i], a[j], b[j]), (a[i], b[j], b[i])]
    z0, z1 = prof[0, 1], prof[-1, 1]
    for i in range(segments):
        j = (i + 1) % segments
        if prof[0, 0] > 0:
            tris.append(((0, 0, z0), ring[0][j], ring[0][i]))
        if prof[-1, 0] > 0:
            tris.append(((0, 0, z1), ring[-1][i], ring[-1][j]))
    tri = np.array(tris, dtype=float)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    tri = tri[area > 1e-12]
    centre = (tri.reshape(-1, 3).min(0) + tri.reshape(-1, 3).max(0)) / 2
    return tri - centre


def prism(polygon_xy: list[tuple[float, float]], height: float) -> np.ndarray:
    """(T, 3, 3) triangles of a convex polygon (counter-clockwise) extruded along z, centred."""
    p = np.asarray(polygon_xy, dtype=float)
    p = p - (p.min(0) + p.max(0)) / 2
    n = len(p)
    lo = np.column_stack((p, np.full(n, -height / 2)))
    hi = np.column_stack((p, np.full(n, height / 2)))
    tris = []
    for i in range(n):
        j = (i + 1) % n
        tris += [(lo[i], lo[j], hi[j]), (lo[i], hi[j], hi[i])]
    for i in range(1, n - 1):
        tris += [(lo[0], lo[i + 1], lo[i]), (hi[0], hi[i], hi[i + 1])]
    return np.array(tris, dtype=float)


def write_stl(path: Path, tri: np.ndarray) -> None:
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    with open(path, "wb") as f:
        f.write(b"dexstack object mesh".ljust(80, b" "))
        f.write(struct.pack("<I", len(tri)))
        for n, t in zip(normals, tri):
            f.write(struct.pack("<12fH", *n, *t.ravel(), 0))


def meshes() -> dict[str, np.ndarray]:
    z = np.linspace(-0.8, 1.0, 17)  # cut flat at the bottom, so the egg and the lemon stand
    egg_r = 0.024 * np.sqrt(np.clip(1 - z ** 2, 0, 1)) * (1 - 0.12 * z)  # wider at the bottom: concave profile
    lemon_r = 0.028 * np.clip(1 - np.abs(z) ** 1.6, 0, 1) ** 0.6  # pointed ends
    return {
        # cup: a frustum, wider at the top (r 30 -> 40 mm, 100 mm tall)
        "cup": revolve([(0.030, 0.0), (0.040, 0.10)]),
        # bottle: 120 mm body (r 33 mm), a conical shoulder to a 13 mm neck, 185 mm tall (convex: no neck step)
        "bottle": revolve([(0.033, 0.0), (0.033, 0.12), (0.028, 0.15), (0.018, 0.175), (0.013, 0.185)]),
        "egg": revolve([(r, 0.030 * zz) for r, zz in zip(egg_r, z)], segments=32),
        "lemon": revolve([(r, 0.042 * zz) for r, zz in zip(lemon_r, z)], segments=32),
        # hexagonal prism (a large nut / pencil box), circumradius 32 mm, 90 mm tall
        "hex_prism": revolve([(0.032, 0.0), (0.032, 0.09)], segments=6),
        # wedge: a triangular prism (door stop), legs 80 x 45 mm, 50 mm wide
        "wedge": np.einsum("ij,tkj->tki", np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float),
                           prism([(0.0, 0.0), (0.08, 0.0), (0.0, 0.045)], 0.05)),
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, tri in meshes().items():
        write_stl(OUT / f"{name}.stl", tri)
        ext = tri.reshape(-1, 3).max(0) - tri.reshape(-1, 3).min(0)
        print(f"{name}: {len(tri)} triangles, extents {np.round(ext * 1000).astype(int).tolist()} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
