"""Dataset statistics as LeRobot (v3) stores them in ``meta/stats.json`` and per episode. No ROS imports.

Every feature gets ``min``, ``max``, ``mean``, ``std``, ``count`` and the quantiles ``q01 q10 q50 q90 q99``
(LeRobot's ``DEFAULT_QUANTILES``; its normalisers can use them instead of mean/std). Vectors are reduced over
frames (shape ``(D,)``). Images are reduced per channel over a sample of frames and pixels (shape ``(C, 1, 1)``):
8-bit color divided by 255 (values in [0, 1]), depth maps kept in their stored unit (millimetres), as LeRobot does
for features flagged ``is_depth_map``. Quantiles here are exact (``np.quantile``) where LeRobot approximates them
with histograms; the values agree to the histogram's resolution.

Aggregation over episodes follows LeRobot's ``aggregate_feature_stats``: count-weighted mean, the parallel-variance
formula for std, min of mins, max of maxes, and for quantiles the most extreme per-episode value (min for
``q <= 50``, max above): a conservative bound, not the quantile of the union.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)


def _stats(values: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Stats over axis 0 of (N, D) float64 values."""
    out = {"min": values.min(axis=0), "max": values.max(axis=0), "mean": values.mean(axis=0),
           "std": values.std(axis=0), "count": np.array([int(count)])}
    for key, q in zip(QUANTILE_KEYS, QUANTILES):
        out[key] = np.quantile(values, q, axis=0)
    return out


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of a vector (N, D) or scalar (N,) feature over its N frames; every value has shape (D,) or (1,)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if len(values) == 0:
        raise ValueError("no values to compute statistics of")
    return _stats(values, len(values))


def sample_indices(n_frames: int, min_samples: int = 100, max_samples: int = 10_000, power: float = 0.75) -> np.ndarray:
    """Frames whose pixels enter the image stats: ~n^0.75 of them, evenly spread (LeRobot's heuristic: all of
    an episode up to 100 frames, 177 of 1000)."""
    if n_frames <= 0:
        return np.zeros(0, dtype=int)
    n = max(min(min_samples, n_frames), min(int(n_frames ** power), max_samples))
    return np.unique(np.round(np.linspace(0, n_frames - 1, n)).astype(int))


def downsample(image: np.ndarray, target_px: int = 150, threshold_px: int = 300) -> np.ndarray:
    """Every k-th pixel of an (H, W[, C]) image whose larger side exceeds ``threshold_px`` (as LeRobot samples)."""
    h, w = image.shape[:2]
    if max(h, w) < threshold_px:
        return image
    k = max(1, int(max(h, w) / target_px))
    return image[::k, ::k]


def image_stats(samples: list[np.ndarray] | np.ndarray, count: int, scale: float = 255.0) -> dict[str, np.ndarray]:
    """Per-channel stats of sampled (H, W, C) or (H, W) frames, divided by ``scale`` (255 for 8-bit color, 1 for
    depth in mm); values shaped (C, 1, 1); ``count`` = the frames the samples stand for."""
    stack = np.stack([s if s.ndim == 3 else s[:, :, None] for s in samples]).astype(np.float64) / scale
    flat = stack.reshape(-1, stack.shape[-1])
    out = _stats(flat, count)
    return {k: v if k == "count" else v.reshape(-1, 1, 1) for k, v in out.items()}


def aggregate_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stats of the union of episodes from per-episode stats (see the module docstring)."""
    if not parts:
        raise ValueError("no statistics to aggregate")
    counts = np.array([float(p["count"][0]) for p in parts])
    total = counts.sum()
    means = np.stack([p["mean"] for p in parts])
    w = (counts / total).reshape((-1,) + (1,) * (means.ndim - 1))
    mean = (w * means).sum(axis=0)
    variance = (w * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(axis=0)
    out = {"min": np.min([p["min"] for p in parts], axis=0), "max": np.max([p["max"] for p in parts], axis=0),
           "mean": mean, "std": np.sqrt(variance), "count": np.array([int(total)])}
    for key in QUANTILE_KEYS:
        if all(key in p for p in parts):
            values = np.stack([p[key] for p in parts])
            out[key] = values.min(axis=0) if int(key[1:]) <= 50 else values.max(axis=0)
    return out


def jsonable(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}
