"""Benchmark of V-GPS re-ranking (``vgps`` policy type) around the tracking bundle.

    flock /tmp/dexstack-cpu.lock .venv/bin/python bench/vgps.py --critic policies/track_cube_q

On the held-out references (policies/references/heldout_*; ``--split validation`` uses training-distribution
references drawn with another seed instead, for choosing K/temperature without touching the held-out set), for each
seed, from the same start states (each reference's start, nominal physics, sim object pose), through
:func:`dexstack.policies.tracking.env.evaluate` (the runtime the node uses):

- ``base_success``: plain sampling of the base policy's Gaussian (K = 1);
- ``base_mean_success``: the deterministic mean action (the bundle as shipped; the same for every seed);
- ``vgps_success``: K candidates (the mean among them with ``include_mean``) scored by the critic (``--margin``:
  the argmax only if its Q beats the mean action's by more than the margin, else the mean);
- ``random_k_success``: a uniform choice among the same K candidates (the paper's control).

``--path direct`` (default): the policy's targets straight to the cell's drivers (``evaluate`` as trained);
``--path ticked``: the deployed command path, the safety gate of ``config/safety.yaml`` ticked at its rate with the
measured state (:class:`dexstack.evaluation.ticked.TickedCell`, what ``safety_monitor`` does on the ROS graph).

Success = the tracking task's (object within 4 cm all along, final error <= 3 cm / 0.4 rad). Each policy's sampler is
seeded identically per (seed, reference). ``step_ms_base`` / ``step_ms_vgps``: median time of one policy step
(observation + network [+ K samples + critic]) on one torch thread, as the node runs it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def references(split: str, description, n_validation: int) -> list:
    from dexstack.policies import list_references, load_reference, reference_path
    from dexstack.policies.tracking.references import cached_reference, training_specs

    if split == "heldout":
        return [load_reference(reference_path(n), description) for n in sorted(list_references())
                if n.startswith("heldout_")]
    return [cached_reference(s, description) for s in training_specs(n_validation, seed=200)]


def success_rate(policy, refs, backend, description, seeds, seeded: bool) -> tuple[float, list[list[bool]]]:
    from dexstack.policies.tracking.env import evaluate

    table = []
    for seed in seeds:
        row = []
        for i, ref in enumerate(refs):
            if seeded:
                policy.reseed(seed * 1000 + i)
            row.append(bool(evaluate(policy, [ref], backend, description)[0].success))
        table.append(row)
        if not seeded:  # deterministic: every seed gives the same episodes
            table = [row] * len(seeds)
            break
    return float(np.mean(table)), table


def step_ms(policy, ref, steps: int) -> float:
    from dexstack.policies.registry import synthetic_context

    policy.reference = ref
    ctx = synthetic_context(policy)
    policy.reset(ctx)
    times = []
    for k in range(steps):
        ctx.t_s = (k % 100) * ctx.period_s
        t0 = time.perf_counter()
        policy.act(ctx)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="track_cube")
    parser.add_argument("--critic", default="track_cube_q")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--std-scale", type=float, default=1.0,
                        help="V-GPS and random-of-K candidates' std as a multiple of the policy's (sampling keeps 1)")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="V-GPS only: execute the argmax only if its Q beats the mean action's by more than this "
                             "(Q units; 0 = plain argmax; needs the mean among the candidates)")
    parser.add_argument("--no-mean", action="store_true", help="candidates are K samples only (the paper's setup)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split", choices=("heldout", "validation"), default="heldout")
    parser.add_argument("--validation-references", type=int, default=12)
    parser.add_argument("--timing-steps", type=int, default=300)
    parser.add_argument("--path", choices=("direct", "ticked"), default="direct",
                        help="direct: targets straight to the drivers; ticked: through the deployed safety gate")
    parser.add_argument("--only", nargs="+", default=[],
                        choices=["base_success", "base_mean_success", "vgps_success", "random_k_success"],
                        help="score only these (default: all four)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from dexstack.policies import load_policy
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.vgps.collect import sampling_policy
    from dexstack.vgps.critic import load_critic

    backend = CellBackend()
    if args.path == "ticked":
        from dexstack.evaluation.ticked import TickedCell

        backend = TickedCell(backend)
    description = backend.description
    refs = references(args.split, description, args.validation_references)
    critic = load_critic(args.critic)
    include_mean = not args.no_mean
    base_mean = load_policy(args.base, description)
    base = sampling_policy(args.base, description)
    vgps = sampling_policy(args.base, description, k=args.k, selection="critic", include_mean=include_mean,
                           critic=str(critic.root), temperature=args.temperature, name=f"{args.base}_vgps",
                           std_scale=args.std_scale, margin=args.margin)
    random_k = sampling_policy(args.base, description, k=args.k, selection="random", include_mean=include_mean,
                               std_scale=args.std_scale)
    t0 = time.monotonic()
    out: dict = {}
    diagnostics: dict = {}
    tables = {}
    for key, policy, seeded in (("base_success", base, True), ("base_mean_success", base_mean, False),
                                ("vgps_success", vgps, True), ("random_k_success", random_k, True)):
        if args.only and key not in args.only:
            continue
        out[key], tables[key] = success_rate(policy, refs, backend, description, args.seeds, seeded)
        print(key, out[key], tables[key], file=sys.stderr, flush=True)
        if key == "vgps_success":
            diagnostics = policy.diagnostics()  # over its last 200 steps (the last episode), before the timing loop
    out.update(k=args.k, temperature=args.temperature, include_mean=include_mean, std_scale=args.std_scale,
               margin=args.margin, step_ms_base=round(step_ms(base_mean, refs[0], args.timing_steps), 3),
               step_ms_vgps=round(step_ms(vgps, refs[0], args.timing_steps), 3),
               episodes_trained_on=int(critic.spec.info.get("episodes", -1)), critic=critic.name,
               algorithm=critic.spec.algorithm, split=args.split, path=args.path, seeds=args.seeds,
               references=[r.name for r in refs],
               per_seed={k: [float(np.mean(row)) for row in t] for k, t in tables.items()},
               per_reference={k: {r.name: float(np.mean([row[i] for row in t])) for i, r in enumerate(refs)}
                              for k, t in tables.items()},
               vgps_diagnostics=diagnostics, wall_s=round(time.monotonic() - t0, 1), load=os.getloadavg()[0])
    out["rerank_ms_added"] = round(out["step_ms_vgps"] - out["step_ms_base"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
