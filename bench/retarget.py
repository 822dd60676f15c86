"""Benchmark of hand retargeting: dexstack's HandRetargeter vs dex-retargeting (the peer), same inputs.

Both retarget the same synthetic keypoint sequences (smooth random Allegro motions turned into human keypoints,
``dexstack.retarget.synthetic``), per method (vector, position, DexPilot), with the same terms, scaling, Huber
delta, regularisation and start configuration (the profile's home), and no output low-pass filter (it only adds
lag). The peer is given the same kinematics: the hand subtree of the merged description (example-robot-data's
Allegro URDF, root ``palm_link``) plus the fixed ``wrist`` link our config defines, as a temporary URDF.

- ``*_hz``: retarget calls per second (1 / mean wall time of one call, keypoints -> joint targets, one core).
- ``*_err_mm``: mean fingertip position error (profile fingertips) against the robot motion that made the input.
- ``*_d2q_mrad``: mean |second difference| of the output joints per frame (roughness: jitter shows up here).
Prints one JSON line. The peer is optional (``pip install dex-retargeting==0.5.0``): without it ``peer_hz`` is
null and ``peer_error`` says why.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from dexstack.retarget.config import HandRetargetConfig, load_retarget_config  # noqa: E402
from dexstack.retarget.hand import HandRetargeter  # noqa: E402
from dexstack.retarget.hand_model import hand_urdf_xml  # noqa: E402
from dexstack.retarget.synthetic import synthetic_sequence  # noqa: E402
from dexstack.robot import load_description  # noqa: E402
from dexstack.viz.plots import add_plot_argument, bench_plot  # noqa: E402

METHODS = ("vector", "position", "dexpilot")


def fingertip_error_mm(retargeter: HandRetargeter, q_out: np.ndarray, q_true: np.ndarray) -> float:
    tips = list(retargeter.description.profile.hand.fingertip_links)
    errs = [np.linalg.norm(retargeter.hand.link_positions(a, tips) - retargeter.hand.link_positions(b, tips), axis=1)
            for a, b in zip(q_out, q_true, strict=True)]
    return float(1000 * np.mean(errs))


def run_ours(retargeter: HandRetargeter, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    retargeter.reset()
    out, times = np.empty((len(keypoints), retargeter.hand.n)), np.empty(len(keypoints))
    gc.collect()
    for k, kp in enumerate(keypoints):
        t0 = time.perf_counter()
        out[k] = retargeter.retarget(kp)
        times[k] = time.perf_counter() - t0
    return out, times


class Peer:
    """dex-retargeting's SeqRetargeting for one of our configs (same terms and parameters)."""

    def __init__(self, config: HandRetargetConfig, urdf_path: str, ours: HandRetargeter):
        from dex_retargeting.retargeting_config import RetargetingConfig

        common = {"urdf_path": urdf_path, "add_dummy_free_joint": False, "low_pass_alpha": 1.0,
                  "scaling_factor": config.scaling, "huber_delta": config.huber_delta_m,
                  "normal_delta": config.reg_weight}
        self.R_root_H = ours.T_root_H[:3, :3]
        self.t_root_H = ours.T_root_H[:3, 3]
        if config.method == "vector":
            cfg = {"type": "vector", **common,
                   "target_origin_link_names": [t.origin_link for t in config.vectors],
                   "target_task_link_names": [t.task_link for t in config.vectors],
                   "target_link_human_indices": [[t.human_origin for t in config.vectors],
                                                 [t.human_task for t in config.vectors]]}
            self.origin = np.array([t.human_origin for t in config.vectors])
            self.task = np.array([t.human_task for t in config.vectors])
        elif config.method == "position":
            cfg = {"type": "position", **common, "target_link_names": [t.link for t in config.points],
                   "target_link_human_indices": [t.human for t in config.points]}
            self.task = np.array([t.human for t in config.points])
        else:
            dp = config.dexpilot
            # the peer builds its pairs from the fingertips with human indices 4 * (position in the list)
            if dp.wrist_human != 0 or list(dp.fingertip_human) != [4 * (i + 1) for i in range(len(dp.fingertip_human))]:
                raise ValueError("the peer's DexPilot assumes human indices 0 (wrist) and 4, 8, 12, ... (tips)")
            cfg = {"type": "dexpilot", **common, "wrist_link_name": dp.wrist_link,
                   "finger_tip_link_names": list(dp.fingertip_links),
                   "project_dist": dp.project_dist_m, "escape_dist": dp.escape_dist_m}
            del cfg["huber_delta"], cfg["normal_delta"]  # fixed inside its DexPilot optimizer (0.03, 4e-3)
            n = len(dp.fingertip_links)
            origin = [j for i in range(1, n) for j in range(i + 1, n + 1)] + [0] * n
            task = [i for i in range(1, n) for _ in range(i + 1, n + 1)] + list(range(1, n + 1))
            self.origin, self.task = 4 * np.array(origin), 4 * np.array(task)
        self.method = config.method
        self.scaling = config.scaling
        self.seq = RetargetingConfig.from_dict(cfg).build()
        self.seq.optimizer.norm_delta = config.reg_weight  # its DexPilot takes no regularisation weight from configs
        names = list(self.seq.joint_names)
        self.to_ours = np.array([names.index(j) for j in ours.joint_names])
        self.home = np.zeros(len(names))
        self.home[self.to_ours] = ours.description.home(ours.joint_names)

    def ref(self, kp_H: np.ndarray) -> np.ndarray:
        """The peer's input: human vectors (unscaled) or scaled positions, in the hand root frame."""
        if self.method == "position":
            return self.scaling * (kp_H[self.task] - kp_H[0]) @ self.R_root_H.T + self.t_root_H
        return (kp_H[self.task] - kp_H[self.origin]) @ self.R_root_H.T

    def run(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.seq.reset()
        self.seq.set_qpos(self.home.copy())
        if self.seq.filter is not None:
            self.seq.filter.reset()
        out, times = np.empty((len(keypoints), len(self.to_ours))), np.empty(len(keypoints))
        gc.collect()
        for k, kp in enumerate(keypoints):
            t0 = time.perf_counter()
            q = self.seq.retarget(self.ref(kp))
            times[k] = time.perf_counter() - t0
            out[k] = q[self.to_ours]
        return out, times


def build_peers(configs: dict[str, HandRetargetConfig], ours: dict[str, HandRetargeter], tmp: str,
                result: dict[str, object]) -> dict[str, Peer]:
    from importlib.metadata import version

    import dex_retargeting  # noqa: F401  (ImportError: reported as peer_error)

    result["peer"] = f"dex-retargeting {version('dex-retargeting')}"
    first = next(iter(ours.values()))
    urdf = Path(tmp) / "hand.urdf"
    urdf.write_text(hand_urdf_xml(first.description, [first.config.human_frame]))
    return {m: Peer(configs[m], str(urdf), ours[m]) for m in configs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="allegro_right", help="config/retarget/<name>.yaml or a path")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--frames", type=int, default=600, help="frames per sequence (30 Hz)")
    parser.add_argument("--seeds", type=int, default=2, help="number of random sequences")
    parser.add_argument("--noise-mm", type=float, default=0.0, help="Gaussian keypoint noise (std per axis, mm)")
    parser.add_argument("--no-peer", action="store_true", help="skip dex-retargeting")
    add_plot_argument(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    configs = {m: replace(load_retarget_config(args.config, m), low_pass_alpha=1.0) for m in methods}
    description = load_description(configs[methods[0]].robot_profile)
    ours = {m: HandRetargeter(c, description) for m, c in configs.items()}
    sequences = [synthetic_sequence(configs[methods[0]], ours[methods[0]].hand, args.frames, seed=s)
                 for s in range(args.seeds)]
    rng = np.random.default_rng(1234)
    inputs = [seq.keypoints_m + rng.normal(0.0, args.noise_mm / 1000, seq.keypoints_m.shape) for seq in sequences]

    result: dict[str, object] = {"frames": args.frames * args.seeds, "config": args.config, "noise_mm": args.noise_mm}
    peer_error: str | None = "skipped (--no-peer)" if args.no_peer else None
    peers: dict[str, Peer] = {}
    totals: dict[str, list] = {"ours": [0.0, 0, []], "peer": [0.0, 0, []]}
    samples: dict[str, np.ndarray] = {}  # per-call times (us), for --plot
    tmp = tempfile.mkdtemp(prefix="dexstack-bench-retarget-")
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "dex_retargeting-*")))
    # the peer prints (warnings, optimiser failures): stdout is kept for the one JSON line
    with contextlib.redirect_stdout(sys.stderr):
        try:
            if peer_error is None:
                try:
                    peers = build_peers(configs, ours, tmp, result)
                except Exception as exc:  # noqa: BLE001  (not installed, or an API it lacks: report it, do not crash)
                    peer_error = f"{type(exc).__name__}: {exc}"
            for m in methods:
                for side in ("ours", "peer"):
                    if side == "peer" and m not in peers:
                        continue
                    times, errs, rough = [], [], []
                    for seq, keypoints in zip(sequences, inputs, strict=True):
                        try:
                            q_out, t = run_ours(ours[m], keypoints) if side == "ours" else peers[m].run(keypoints)
                        except Exception as exc:
                            if side == "ours":
                                raise
                            peer_error, peers = f"{m}: {type(exc).__name__}: {exc}", {}
                            break
                        times.append(t)
                        errs.append(fingertip_error_mm(ours[m], q_out, seq.q_rad))
                        rough.append(1000 * np.abs(np.diff(q_out, 2, axis=0)).mean())
                    if not times or len(times) < len(sequences):
                        continue
                    t = np.concatenate(times)
                    samples[f"{m} {side}"] = 1e6 * t
                    result[f"{m}_{side}_hz"] = round(1.0 / t.mean(), 1)
                    result[f"{m}_{side}_us_p50"] = round(1e6 * float(np.median(t)), 1)
                    result[f"{m}_{side}_us_p99"] = round(1e6 * float(np.percentile(t, 99)), 1)
                    result[f"{m}_{side}_err_mm"] = round(float(np.mean(errs)), 3)
                    result[f"{m}_{side}_d2q_mrad"] = round(float(np.mean(rough)), 2)
                    totals[side][0] += float(t.sum())
                    totals[side][1] += len(t)
                    totals[side][2].append(float(np.mean(errs)))
                if m in peers:
                    result[f"{m}_speedup"] = round(result[f"{m}_ours_hz"] / result[f"{m}_peer_hz"], 1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for path in set(glob.glob(os.path.join(tempfile.gettempdir(), "dex_retargeting-*"))) - before:
                shutil.rmtree(path, ignore_errors=True)  # left behind by the peer's build()

    ours_hz = totals["ours"][1] / totals["ours"][0]
    result["ours_hz"] = round(ours_hz, 1)
    result["ours_err_mm"] = round(float(np.mean(totals["ours"][2])), 3)
    if peers:
        peer_hz = totals["peer"][1] / totals["peer"][0]
        result.update(peer_hz=round(peer_hz, 1), speedup=round(ours_hz / peer_hz, 1),
                      peer_err_mm=round(float(np.mean(totals["peer"][2])), 3))
    else:
        result.update(peer_hz=None, speedup=None, peer_err_mm=None, peer_error=peer_error)
        result = {k: v for k, v in result.items() if "_peer_" not in k and not k.endswith("_speedup")}
    head = ["ours_hz", "peer_hz", "speedup", "ours_err_mm", "peer_err_mm"]
    line = {**{k: result.pop(k) for k in head}, **result}
    print(json.dumps(line))
    if args.plot:
        bench_plot(args.plot, "bench/retarget.py: ours vs dex-retargeting", line, samples, unit="us per call")


if __name__ == "__main__":
    main()
