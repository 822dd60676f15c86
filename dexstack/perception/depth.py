"""Robust depth of image points from an aligned depth image: patch median, holes, outliers and occlusion edges.

The depth image is aligned to the color image (same pixels, same intrinsics), 16UC1 with ``depth_scale_m`` per unit
(1 mm for RealSense and the sim), 0 = no return. Depth here is z along the optical axis, in metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class DepthStatus(str, Enum):
    OK = "ok"  # one surface in the patch: its median
    EDGE = "edge"  # the patch straddles an occlusion edge: the median of the nearest surface
    HOLE = "hole"  # too few valid pixels (holes, out of range, outside the image)
    AMBIGUOUS = "ambiguous"  # an edge without a clear nearest surface


@dataclass(frozen=True)
class DepthPatchConfig:
    radius_px: int = 3  # patch of (2r+1)^2 pixels around each point
    min_valid_fraction: float = 0.3  # fewer valid pixels than this -> HOLE
    min_depth_m: float = 0.1
    max_depth_m: float = 3.0
    surface_spread_m: float = 0.015  # pixels within this of the surface's median belong to it (a finger's depth)
    min_surface_fraction: float = 0.25  # the nearest surface must cover this much of the valid pixels at an edge


@dataclass(frozen=True)
class DepthSample:
    z_m: np.ndarray  # (N,) depth along the optical axis, NaN where not OK/EDGE
    status: tuple[DepthStatus, ...]  # (N,)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.z_m)


def sample_depth(depth: np.ndarray, uv_px: np.ndarray, config: DepthPatchConfig | None = None,
                 depth_scale_m: float = 0.001) -> DepthSample:
    """Depth at each (u, v) pixel of ``uv_px`` (N, 2) from a (H, W) depth image in ``depth_scale_m`` units.

    In each patch, pixels outside [min_depth_m, max_depth_m] or 0 are holes. If more than 10% of the valid pixels
    lie farther than ``surface_spread_m`` from their median, the patch crosses an occlusion edge (e.g. a fingertip
    in front of the table); the point then takes the nearest surface: the pixels within ``surface_spread_m`` of the
    nearest decile, if they are at least ``min_surface_fraction`` of the valid ones.
    """
    c = config or DepthPatchConfig()
    uv = np.asarray(uv_px, dtype=float).reshape(-1, 2)
    h, w = depth.shape
    r = int(c.radius_px)
    side = 2 * r + 1
    z = np.full(len(uv), np.nan)
    status: list[DepthStatus] = []
    for i, (u, v) in enumerate(uv):
        if not (np.isfinite(u) and np.isfinite(v)):
            status.append(DepthStatus.HOLE)
            continue
        ui, vi = int(round(u)), int(round(v))
        u0, u1, v0, v1 = max(ui - r, 0), min(ui + r + 1, w), max(vi - r, 0), min(vi + r + 1, h)
        if u0 >= u1 or v0 >= v1:
            status.append(DepthStatus.HOLE)
            continue
        patch = depth[v0:v1, u0:u1].astype(np.float64).ravel() * depth_scale_m
        values = patch[(patch >= c.min_depth_m) & (patch <= c.max_depth_m)]
        if len(values) < c.min_valid_fraction * side * side:
            status.append(DepthStatus.HOLE)
            continue
        median = float(np.median(values))
        on_surface = np.abs(values - median) <= c.surface_spread_m
        if on_surface.mean() >= 0.9:  # one surface (a few stray pixels allowed)
            z[i] = float(np.median(values[on_surface]))
            status.append(DepthStatus.OK)
            continue
        near = float(np.percentile(values, 10))
        surface = values[values <= near + c.surface_spread_m]
        if len(surface) >= c.min_surface_fraction * len(values):
            z[i] = float(np.median(surface))
            status.append(DepthStatus.EDGE)
        else:
            status.append(DepthStatus.AMBIGUOUS)
    return DepthSample(z_m=z, status=tuple(status))
