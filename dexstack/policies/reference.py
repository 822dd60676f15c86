"""Reference trajectories: joint targets (and optionally the object's pose) over time, for replay and tracking.

Stored as ``.npz`` (read with ``allow_pickle=False``: a reference file can never run code) with arrays

- ``times_s`` (T,) strictly increasing from 0,
- ``q_rad`` (T, n) joint positions, columns named by ``joint_names`` (n,) (any order; reordered on load),
- ``object_pose`` (T, 7) optional: object position (m) and quaternion xyzw in the robot base frame,
- ``robot_profile`` () the profile it was made for, ``name`` () and ``kind`` () (e.g. lift/push/rotate),
- ``metadata_json`` () optional: provenance as JSON (e.g. the demo episode and its timestamps, ``dexstack-demo2ref``).

In DexTrack terms it is a kinematic hand-object trajectory already retargeted to the robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexstack.policies.errors import PolicyError
from dexstack.robot.description import RobotDescription


@dataclass(frozen=True)
class ReferenceTrajectory:
    times_s: np.ndarray  # (T,)
    q_rad: np.ndarray  # (T, n) in description.joints order
    object_pose: np.ndarray | None = None  # (T, 7) xyz + quat xyzw
    name: str = ""
    kind: str = ""
    robot_profile: str = ""
    metadata: dict | None = None  # provenance (JSON-serialisable), e.g. the demo a reference was made from

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])

    def _interp(self, values: np.ndarray, t_s: np.ndarray | float) -> np.ndarray:
        t = np.clip(np.asarray(t_s, dtype=float), self.times_s[0], self.times_s[-1])
        k = np.clip(np.searchsorted(self.times_s, t, side="right") - 1, 0, len(self.times_s) - 2)
        span = self.times_s[k + 1] - self.times_s[k]
        alpha = ((t - self.times_s[k]) / span)[..., None]
        return (1.0 - alpha) * values[k] + alpha * values[k + 1]

    def q_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Joint reference at ``t_s`` (scalar -> (n,), array (K,) -> (K, n)); held before 0 and after the end."""
        return self._interp(self.q_rad, t_s)

    def object_pose_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Object reference (position linear, quaternion normalised lerp with sign continuity)."""
        if self.object_pose is None:
            raise PolicyError(f"reference '{self.name}' has no object pose")
        pose = self._interp(self.object_pose, t_s)
        quat = pose[..., 3:]
        pose[..., 3:] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
        return pose


def _save(path: Path, arrays: dict) -> Path:
    np.savez_compressed(path, **arrays)
    return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")


def save_reference(ref: ReferenceTrajectory, joint_names: tuple[str, ...], path: Path) -> Path:
    """Write ``ref`` with its joint names (the file is self-describing)."""
    path = Path(path)
    arrays = {"times_s": ref.times_s.astype(np.float64), "q_rad": ref.q_rad.astype(np.float64),
              "joint_names": np.array(joint_names), "name": np.array(ref.name), "kind": np.array(ref.kind),
              "robot_profile": np.array(ref.robot_profile)}
    if ref.object_pose is not None:
        arrays["object_pose"] = ref.object_pose.astype(np.float64)
    if ref.metadata:
        import json  # noqa: PLC0415

        arrays["metadata_json"] = np.array(json.dumps(ref.metadata, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(path, arrays)


def load_reference(path: Path, description: RobotDescription) -> ReferenceTrajectory:
    """Read and check a reference for ``description``; :class:`PolicyError` with the reason otherwise."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise PolicyError(f"reference file {path} does not exist") from None
    except (ValueError, OSError) as exc:  # pickled object arrays are refused here (allow_pickle=False)
        raise PolicyError(f"reference file {path} cannot be read safely: {exc}") from None
    for key in ("times_s", "q_rad", "joint_names"):
        if key not in data:
            raise PolicyError(f"reference {path} has no '{key}' array")
    times, q, names = data["times_s"].astype(float), data["q_rad"].astype(float), [str(n) for n in data["joint_names"]]
    if times.ndim != 1 or times.size < 2 or times[0] != 0.0 or np.any(np.diff(times) <= 0):
        raise PolicyError(f"reference {path}: times_s must start at 0 and strictly increase (>= 2 samples)")
    if q.shape != (times.size, len(names)):
        raise PolicyError(f"reference {path}: q_rad has shape {q.shape}, expected ({times.size}, {len(names)})")
    missing = [n for n in description.joints if n not in names]
    if missing:
        raise PolicyError(f"reference {path} has no values for joints {missing} of robot "
                          f"'{description.profile.name}'")
    q = q[:, [names.index(n) for n in description.joints]]
    if not np.all(np.isfinite(q)):
        raise PolicyError(f"reference {path} has non-finite joint values")
    limits = description.limit_arrays()
    outside = np.flatnonzero(np.any((q < limits["lower"] - 1e-6) | (q > limits["upper"] + 1e-6), axis=0))
    if outside.size:
        raise PolicyError(f"reference {path} leaves the joint limits of {[description.joints[i] for i in outside]}")
    pose = data.get("object_pose")
    if pose is not None:
        pose = pose.astype(float)
        if pose.shape != (times.size, 7) or not np.all(np.isfinite(pose)):
            raise PolicyError(f"reference {path}: object_pose must be finite with shape ({times.size}, 7)")
    metadata = None
    if "metadata_json" in data:
        import json  # noqa: PLC0415

        try:
            metadata = json.loads(str(data["metadata_json"]))
        except ValueError:
            raise PolicyError(f"reference {path}: metadata_json is not valid JSON") from None
    return ReferenceTrajectory(times_s=times, q_rad=q, object_pose=pose,
                               name=str(data.get("name", path.stem)) or path.stem, kind=str(data.get("kind", "")),
                               robot_profile=str(data.get("robot_profile", "")), metadata=metadata)
