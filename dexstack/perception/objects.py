"""Known objects for 6-D pose estimation (``config/objects/<name>.yaml``): shape, fiducial tags, symmetries.

The object frame is the frame the sim (and the ground truth) uses: the centre of the shape (box: its centre,
axes along its edges; cylinder: axis along z; mesh: the mesh file's frame). A tag's frame follows OpenCV's ArUco
convention: origin at the centre of the black square, x to the right and y up in the printed image, z out of the
face; ``T_object_tag`` places it on the object.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dexstack.config_loader import ConfigError, check_keys, read_yaml, resolve_data_file
from dexstack.transforms import make_transform, rpy_to_matrix

FORMAT_VERSION = 1
SHAPES = ("box", "cylinder", "sphere", "mesh")
SPLITS = ("train", "heldout")  # heldout: never used in any training (policies, tuning); evaluation only
TAG_FAMILIES = ("tag36h11",)


class ObjectConfigError(ConfigError):
    """An object configuration is missing or malformed."""


@dataclass(frozen=True, eq=False)
class TagConfig:
    id: int
    T_object_tag: np.ndarray  # 4x4 pose of the tag frame in the object frame


REST_CLEARANCE_M = 1e-4  # an object set on the table starts this far above it (no initial penetration)


@dataclass(frozen=True, eq=False)
class ObjectModel:
    name: str
    shape: str
    size_m: tuple[float, ...]  # box: full extents; cylinder: (radius, height); sphere: (radius,); mesh: unused
    mesh_path: Path | None = None  # STL (binary or ASCII), metres, object frame
    tag_family: str = "tag36h11"
    tag_size_m: float = 0.0  # edge of the black square
    tags: tuple[TagConfig, ...] = ()
    source: Path | None = None
    # Physics and bookkeeping (the sim cell builds the object from these; grasping picks objects by split).
    mass_kg: float = 0.1
    friction: float = 1.0
    rgba: tuple[float, float, float, float] = (0.85, 0.2, 0.2, 1.0)
    split: str = "train"  # one of SPLITS
    labels: tuple[str, ...] = ()  # free-form (e.g. "mesh", "round", "power-grasp")
    _surface_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def tag(self, tag_id: int) -> TagConfig | None:
        return next((t for t in self.tags if t.id == tag_id), None)

    def tag_corners_tag(self) -> np.ndarray:
        """(4, 3) corners of a tag's black square in its own frame, in ArUco order (top-left, top-right,
        bottom-right, bottom-left of the printed image)."""
        s = self.tag_size_m / 2.0
        return np.array([[-s, s, 0.0], [s, s, 0.0], [s, -s, 0.0], [-s, -s, 0.0]])

    @property
    def radius_m(self) -> float:
        """Radius of a sphere around the object-frame origin that contains the object."""
        if self.shape == "box":
            return 0.5 * float(np.linalg.norm(self.size_m))
        if self.shape == "cylinder":
            return float(np.hypot(self.size_m[0], self.size_m[1] / 2))
        if self.shape == "sphere":
            return float(self.size_m[0])
        points, _ = self.surface_points(0.005)
        return float(np.max(np.linalg.norm(points, axis=1)))

    def surface_points(self, spacing_m: float = 0.003) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) points on the surface and (N, 3) outward unit normals, object frame, about ``spacing_m`` apart."""
        key = round(spacing_m, 6)
        if key not in self._surface_cache:
            self._surface_cache[key] = _sample_surface(self, spacing_m)
        return self._surface_cache[key]

    @property
    def extents_m(self) -> np.ndarray:
        """(3,) full extents of the axis-aligned bounding box in the object frame."""
        if self.shape == "box":
            return np.asarray(self.size_m, dtype=float)
        if self.shape == "cylinder":
            return np.array([2 * self.size_m[0], 2 * self.size_m[0], self.size_m[1]])
        if self.shape == "sphere":
            return np.full(3, 2 * self.size_m[0])
        tri = load_stl(self.mesh_path).reshape(-1, 3)
        return tri.max(0) - tri.min(0)

    @property
    def rest_height_m(self) -> float:
        """Height of the object frame (at the object's centre) above the table when the object stands upright on
        it: half its z extent, plus ``REST_CLEARANCE_M``. Where the sim places it, and the table plane the
        retargeting keeps the hand off (at ``-rest_height_m`` in the object frame)."""
        return float(self.extents_m[2]) / 2 + REST_CLEARANCE_M

    def signed_distance(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance (m, negative inside) of (N, 3) object-frame points to the surface, and its (N, 3)
        gradient (outward unit direction). See :mod:`dexstack.perception.object_sdf`."""
        from dexstack.perception.object_sdf import signed_distance

        return signed_distance(self, points)

    def symmetries(self) -> np.ndarray:
        """(K, 3, 3) rotations of the object frame that leave the shape unchanged (for evaluation and ICP
        initialisation). Boxes: the proper rotations permuting equal edges (24 for a cube); other shapes:
        identity only (their continuous symmetries are not enumerated)."""
        if self.shape != "box":
            return np.eye(3)[None]
        size = np.asarray(self.size_m)
        out = []
        for perm in itertools.permutations(range(3)):
            for signs in itertools.product((1.0, -1.0), repeat=3):
                R = np.zeros((3, 3))
                R[np.arange(3), perm] = signs
                if np.linalg.det(R) > 0 and np.allclose(np.abs(R) @ size, size):
                    out.append(R)
        return np.array(out)


def _sample_surface(model: ObjectModel, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    if model.shape == "box":
        half = np.asarray(model.size_m) / 2.0
        points, normals = [], []
        for axis in range(3):
            a, b = [k for k in range(3) if k != axis]
            na, nb = max(int(np.ceil(2 * half[a] / spacing)), 2), max(int(np.ceil(2 * half[b] / spacing)), 2)
            ga, gb = np.meshgrid(np.linspace(-half[a], half[a], na), np.linspace(-half[b], half[b], nb))
            for sign in (1.0, -1.0):
                p = np.zeros((ga.size, 3))
                p[:, a], p[:, b], p[:, axis] = ga.ravel(), gb.ravel(), sign * half[axis]
                n = np.zeros_like(p)
                n[:, axis] = sign
                points.append(p)
                normals.append(n)
        return np.concatenate(points), np.concatenate(normals)
    if model.shape == "cylinder":
        r, h = model.size_m[0], model.size_m[1]
        n_around = max(int(np.ceil(2 * np.pi * r / spacing)), 8)
        n_along = max(int(np.ceil(h / spacing)), 2)
        phi, z = np.meshgrid(np.linspace(0, 2 * np.pi, n_around, endpoint=False), np.linspace(-h / 2, h / 2, n_along))
        side = np.column_stack((r * np.cos(phi.ravel()), r * np.sin(phi.ravel()), z.ravel()))
        side_n = np.column_stack((np.cos(phi.ravel()), np.sin(phi.ravel()), np.zeros(phi.size)))
        g = np.arange(-r, r + 1e-9, spacing)
        gx, gy = np.meshgrid(g, g)
        inside = gx ** 2 + gy ** 2 <= r * r
        disc = np.column_stack((gx[inside], gy[inside]))
        caps = [np.column_stack((disc, np.full(len(disc), s * h / 2))) for s in (1.0, -1.0)]
        caps_n = [np.tile([0.0, 0.0, s], (len(disc), 1)) for s in (1.0, -1.0)]
        return np.concatenate([side, *caps]), np.concatenate([side_n, *caps_n])
    if model.shape == "sphere":
        r = model.size_m[0]
        n = max(int(4 * np.pi * r * r / spacing ** 2), 50)
        k = np.arange(n) + 0.5  # Fibonacci sphere
        phi = np.arccos(1 - 2 * k / n)
        theta = np.pi * (1 + 5 ** 0.5) * k
        normals = np.column_stack((np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)))
        return r * normals, normals
    triangles = load_stl(model.mesh_path)
    return _sample_triangles(triangles, spacing)


def load_stl(path: Path) -> np.ndarray:
    """(T, 3, 3) triangle vertices of a binary or ASCII STL file."""
    data = Path(path).read_bytes()
    if len(data) >= 84:
        count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
        if len(data) == 84 + 50 * count:
            rec = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]),
                                count=count, offset=84)
            return rec["v"].astype(float)
    words = data.decode("ascii", errors="replace").split()
    vertices = [[float(words[i + 1]), float(words[i + 2]), float(words[i + 3])]
                for i, w in enumerate(words) if w == "vertex"]
    if not vertices or len(vertices) % 3:
        raise ObjectConfigError(f"{path}: not a readable STL file")
    return np.array(vertices).reshape(-1, 3, 3)


def _sample_triangles(tri: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted surface samples of a triangle mesh (deterministic), with face normals."""
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    cross = np.cross(e1, e2)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    keep = area > 1e-12
    tri, cross, area = tri[keep], cross[keep], area[keep]
    normals = cross / (2.0 * area[:, None])
    n = max(int(area.sum() / spacing ** 2), len(tri))
    rng = np.random.default_rng(0)
    idx = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    points = (1 - s)[:, None] * tri[idx, 0] + (s * (1 - r2))[:, None] * tri[idx, 1] + (s * r2)[:, None] * tri[idx, 2]
    return points, normals[idx]


def _rpy(entry: dict) -> list[float]:
    """``rpy`` (radians) or ``rpy_deg`` (degrees), URDF convention; default zero."""
    if "rpy_deg" in entry:
        return [float(np.radians(float(v))) for v in entry["rpy_deg"]]
    return [float(v) for v in entry.get("rpy", (0.0, 0.0, 0.0))]


def object_config_path(name_or_path: str) -> Path:
    return resolve_data_file(name_or_path, "config/objects", what="object configuration", error=ObjectConfigError,
                             known_as="objects")


_KEYS = ("version", "name", "shape", "size_m", "mesh", "tags", "mass_kg", "friction", "rgba", "split", "labels")
_TAGS_KEYS = ("family", "size_m", "markers")
_MARKER_KEYS = ("id", "xyz", "rpy", "rpy_deg")


def known_objects(split: str | None = None) -> list[str]:
    """Names of the shipped objects (``config/objects/*.yaml``), all or those of one split, sorted."""
    from dexstack.paths import data_path

    names = sorted(p.stem for p in data_path("config", "objects").glob("*.yaml"))
    if split is None:
        return names
    if split not in SPLITS:
        raise ValueError(f"split '{split}' is not one of {SPLITS}")
    return [n for n in names if load_object_model(n).split == split]


def load_object_model(name_or_path: str) -> ObjectModel:
    """``cube`` -> ``config/objects/cube.yaml``; a YAML path is used as is."""
    path = object_config_path(name_or_path)
    raw = read_yaml(path, ObjectConfigError)
    where = str(path)
    check_keys(raw, _KEYS, where, error=ObjectConfigError)
    check_keys(raw.get("tags") or {}, _TAGS_KEYS, where, "tags", error=ObjectConfigError)
    for i, marker in enumerate((raw.get("tags") or {}).get("markers") or ()):
        check_keys(marker, _MARKER_KEYS, where, f"tags.markers[{i}]", error=ObjectConfigError)
    try:
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {raw.get('version')!r} (expected {FORMAT_VERSION})")
        shape = str(raw["shape"])
        if shape not in SHAPES:
            raise ValueError(f"shape '{shape}' is not one of {SHAPES}")
        size = tuple(float(v) for v in raw.get("size_m", ()))
        expected = {"box": 3, "cylinder": 2, "sphere": 1, "mesh": 0}[shape]
        if shape != "mesh" and (len(size) != expected or min(size) <= 0):
            raise ValueError(f"{shape} needs {expected} positive size_m values, got {list(size)}")
        mesh_path = None
        if shape == "mesh":
            mesh_path = Path(str(raw["mesh"]))
            if not mesh_path.is_absolute():
                mesh_path = path.parent / mesh_path
            if not mesh_path.is_file():
                raise ValueError(f"mesh {mesh_path} does not exist")
        tags_raw = raw.get("tags") or {}
        family = str(tags_raw.get("family", "tag36h11"))
        if family not in TAG_FAMILIES:
            raise ValueError(f"tag family '{family}' is not one of {TAG_FAMILIES}")
        tags = tuple(TagConfig(id=int(t["id"]), T_object_tag=make_transform([float(v) for v in t["xyz"]],
                                                                            rpy_to_matrix(_rpy(t))))
                     for t in tags_raw.get("markers", ()))
        if len({t.id for t in tags}) != len(tags):
            raise ValueError("tag ids must be unique")
        tag_size = float(tags_raw.get("size_m", 0.0))
        if tags and tag_size <= 0:
            raise ValueError("tags.size_m must be positive")
        mass, friction = float(raw.get("mass_kg", 0.1)), float(raw.get("friction", 1.0))
        if not 0.005 <= mass <= 5.0:
            raise ValueError(f"mass_kg {mass} outside [0.005, 5]")
        if not 0.05 <= friction <= 3.0:
            raise ValueError(f"friction {friction} outside [0.05, 3]")
        rgba = tuple(float(v) for v in raw.get("rgba", (0.85, 0.2, 0.2, 1.0)))
        if len(rgba) != 4 or not all(0.0 <= c <= 1.0 for c in rgba):
            raise ValueError(f"rgba must be 4 values in [0, 1], got {list(rgba)}")
        split = str(raw.get("split", "train"))
        if split not in SPLITS:
            raise ValueError(f"split '{split}' is not one of {SPLITS}")
        labels = tuple(str(v) for v in raw.get("labels") or ())
        return ObjectModel(name=str(raw.get("name", path.stem)), shape=shape, size_m=size, mesh_path=mesh_path,
                           tag_family=family, tag_size_m=tag_size, tags=tags, source=path, mass_kg=mass,
                           friction=friction, rgba=rgba, split=split, labels=labels)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ObjectConfigError(f"{path}: {exc}") from exc
