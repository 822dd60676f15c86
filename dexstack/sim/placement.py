"""Where the sim cell puts its object at start: the ``object_start`` parameter of ``sim_cell`` (and the
``object_start`` argument of ``launch/sim_policy.launch.xml``).

Forms:

- ``""`` or ``cell``: the cell configuration's ``object.initial_xyz_m`` / ``initial_rpy_rad``;
- ``reference:<name>``: the start of reference ``<name>``'s object trajectory (policies/references/<name>.npz or a
  path), so a policy starts where its reference does (``reference:`` alone: the cell configuration's pose);
- ``x y z`` or ``x y z yaw`` (metres, radians; spaces or commas): on the table at that point, turned by ``yaw``.
"""

from __future__ import annotations

import math

import numpy as np

from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix


def object_start_pose(spec: str, description=None) -> np.ndarray | None:
    """(7,) xyz + quat xyzw, or None for the cell configuration's pose. ValueError with the reason if invalid."""
    text = (spec or "").strip()
    if text in ("", "cell", "reference:"):
        return None
    if text.startswith("reference:"):
        name = text.split(":", 1)[1].strip()
        if description is None:
            raise ValueError("object_start 'reference:...' needs the robot description to read the reference")
        from dexstack.policies.bundles import reference_path  # noqa: PLC0415 (sim only needs it for this form)
        from dexstack.policies.errors import PolicyError  # noqa: PLC0415
        from dexstack.policies.reference import load_reference  # noqa: PLC0415

        try:
            ref = load_reference(reference_path(name), description)
            return ref.object_pose_at(0.0)
        except PolicyError as exc:
            raise ValueError(f"object_start '{spec}': {exc}") from None
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"object_start '{spec}' is neither 'cell', 'reference:<name>' nor 'x y z [yaw]'") from None
    if len(values) not in (3, 4) or not all(math.isfinite(v) for v in values):
        raise ValueError(f"object_start '{spec}': give 3 or 4 finite numbers (x y z [yaw]), got {len(values)}")
    yaw = values[3] if len(values) == 4 else 0.0
    return np.concatenate([values[:3], matrix_to_quat_xyzw(rpy_to_matrix((0.0, 0.0, yaw)))])
