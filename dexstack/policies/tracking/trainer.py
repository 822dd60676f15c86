"""PPO training of the tracking policy on the batched task layer, any backend; checkpoint selection on validation
references; curves; held-out evaluation in-process through the policy runtime. Driven by ``dexstack-train``.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dexstack.policies.manifest import parse_manifest
from dexstack.policies.tracking.ppo import PPO, ActorCritic, PPOConfig
from dexstack.policies.tracking.task import Randomization, TrackingTask
from dexstack.policies.tracking.vec_env import VecTrackingEnv, run_episodes

N_ARM_SCALE, N_HAND_SCALE = 0.04, 0.2  # residual range (rad) per unit action: arm, hand
BACKENDS = ("cpu", "mjwarp", "isaacgym")
CURVE_COLUMNS = ["iteration", "wall_s", "samples", "samples_per_s", "mean_reward", "episodes", "success_rate",
                 "val_success", "val_max_error_m", "value_loss", "kl", "lr", "std", "diverged"]


def tracking_manifest(n_arm: int, n_hand: int, rate_hz: float = 20.0, hidden: tuple[int, ...] = (256, 128),
                      profile: str = "panda_allegro", name: str = "track_cube") -> dict:
    """The bundle manifest the trainer writes (the observation/action layout is defined here, once)."""
    n = n_arm + n_hand
    return {
        "name": name,
        "type": "tracking",
        "description": "DexTrack-style residual tracking of lift/push/rotate cube references (PPO in the sim cell).",
        "robot_profile": profile,
        "control_rate_hz": rate_hz,
        "reference": "lift",
        "checkpoint": {"file": "model.pt", "format": "rl_games", "hidden": list(hidden), "activation": "elu"},
        "observation": [
            {"name": "joint_pos", "size": n},
            {"name": "joint_vel", "size": n, "scale": 0.1},
            {"name": "object_pose", "size": 7},
            {"name": "ref_joint_pos", "size": 3 * n, "steps": [1, 2, 4], "relative": True},
            {"name": "ref_object_pose", "size": 21, "steps": [0, 2, 4], "relative": True},
            {"name": "last_action", "size": n},
        ],
        "action": {"mode": "residual", "joints": "all", "clip": 1.0,
                   "scale": [N_ARM_SCALE] * n_arm + [N_HAND_SCALE] * n_hand},
    }


@dataclass(frozen=True)
class TrainConfig:
    backend: str = "cpu"
    minutes: float = 20.0
    iterations: int = 0  # > 0: stop after this many PPO iterations instead of the time budget
    seed: int = 0
    envs: int = 32  # parallel environments (all workers)
    workers: int = 2  # cpu backend: physics worker processes
    # cpu backend with workers: env groups stepped in turn, the learner computing one group's actions while the
    # workers step the other (1: every env in one synchronous step; bench/train_throughput.py, docs/benchmarks.md)
    groups: int = 2
    steps: int = 32  # steps per environment per PPO iteration
    train_references: int = 24
    validation_references: int = 6
    validate_every_s: float = 60.0
    rate_hz: float = 20.0
    gate: str = "limits"  # cpu backend: "full" | "limits" | "off" (cpu_backend.CommandPath)
    timestep_s: float = 0.005
    device: str = "cpu"
    profile: str = "panda_allegro"
    # training from demos: reference files (dexstack-demo2ref output) instead of the designed references, and the
    # validation files checkpoints are selected on (never the held-out demos); start-pose randomisation
    reference_files: tuple[str, ...] = ()
    validation_files: tuple[str, ...] = ()
    object_start_xy_m: float = 0.0
    object_start_yaw_rad: float = 0.0
    name: str = "track_cube"
    init_bundle: str = ""  # start from this bundle's actor and observation normaliser (fine-tuning)
    init_std: float = 0.0  # > 0: fine-tuning explores with this action std instead of the bundle's
    critic_warmup: int = 0  # PPO iterations that train only the fresh critic before the actor moves (fine-tuning)
    # PPO's starting learning rate and KL target (0: PPOConfig's). Fine-tuning a good actor needs a small start: a
    # fresh Adam's first step moves every weight by ~lr (bias-corrected), measured KL 1.4 on track_cube at 3e-4
    learning_rate: float = 0.0
    desired_kl: float = 0.0
    freeze_normalizer: bool = False  # with --init: keep the bundle's observation statistics (the actor's inputs)
    object_drop_prob: float = -1.0  # >= 0: periods without a fresh object pose (default: CommandPath's)
    object_drop_burst_periods: float = 0.0  # mean run of dropped periods (0: independent; CommandPath)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.minutes <= 0 and self.iterations <= 0:
            raise ValueError("give a positive --minutes or --iterations")
        for name in ("envs", "workers", "groups", "steps", "train_references", "validation_references"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not (self.init_std == 0.0 or 0.0 < self.init_std <= 2.0):
            raise ValueError(f"init_std must be 0 (the bundle's) or in (0, 2], got {self.init_std}")
        if (self.init_std or self.critic_warmup) and not self.init_bundle:
            raise ValueError("init_std and critic_warmup are for fine-tuning: give init_bundle")
        if self.critic_warmup < 0:
            raise ValueError("critic_warmup must be >= 0")
        if self.freeze_normalizer and not self.init_bundle:
            raise ValueError("freeze_normalizer is for fine-tuning: give init_bundle")
        if not (self.learning_rate == 0.0 or 1e-6 <= self.learning_rate <= 1e-2):
            raise ValueError(f"learning_rate must be 0 (PPO's default) or in [1e-6, 1e-2], got {self.learning_rate}")
        if not (self.desired_kl == 0.0 or 1e-4 <= self.desired_kl <= 0.1):
            raise ValueError(f"desired_kl must be 0 (PPO's default) or in [1e-4, 0.1], got {self.desired_kl}")
        if not (self.object_drop_prob == -1.0 or 0.0 <= self.object_drop_prob < 1.0):
            raise ValueError(f"object_drop_prob must be in [0, 1) (or -1: the default), got {self.object_drop_prob}")


def make_backend(config: TrainConfig, n_envs: int, period_s: float, ideal: bool = False, processes: bool = True):
    from dexstack.policies.tracking.cpu_backend import CommandPath, MujocoBatch, WorkerPool  # noqa: PLC0415

    if config.backend == "isaacgym":
        raise RuntimeError("the isaacgym backend trains through IsaacGymEnvs/rl_games (dexstack.policies.tracking."
                           "isaacgym_task), which needs Isaac Gym and an NVIDIA GPU: not available on this machine")
    if config.backend == "mjwarp":
        from dexstack.policies.tracking.mjwarp_backend import MjWarpBatch  # noqa: PLC0415

        return MjWarpBatch(n_envs, period_s, timestep_s=config.timestep_s, device=config.device)
    if ideal:
        path = CommandPath.ideal(config.gate, config.timestep_s)
    else:
        drops = {} if config.object_drop_prob < 0.0 else {"object_drop_prob": config.object_drop_prob}
        path = CommandPath(gate=config.gate, timestep_s=config.timestep_s,
                           object_drop_burst_periods=config.object_drop_burst_periods, **drops)
    if processes and config.workers > 1:
        return WorkerPool(n_envs, period_s, config.workers, path, seed=config.seed,
                          n_groups=min(config.groups, n_envs))  # fewer envs than groups: one env each
    return MujocoBatch(n_envs, period_s, path, seed=config.seed)


def load_references(specs, description) -> list:
    from dexstack.policies.tracking.references import cached_reference  # noqa: PLC0415

    return [cached_reference(spec, description) for spec in specs]


def load_reference_files(paths, description) -> list:
    """References from files (``PolicyError`` -> ValueError with the file named)."""
    from dexstack.policies.errors import PolicyError  # noqa: PLC0415
    from dexstack.policies.reference import load_reference  # noqa: PLC0415

    refs = []
    for path in paths:
        try:
            ref = load_reference(Path(path), description)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        if ref.object_pose is None:
            raise ValueError(f"reference {path} has no object pose: it cannot be tracked")
        refs.append(ref)
    return refs


def init_from_bundle(model: ActorCritic, bundle: str, description) -> None:
    """Copy a tracking bundle's actor, action std and observation statistics into ``model`` (the critic starts
    fresh). ValueError if the bundle's network does not fit (other observation/action layout)."""
    from dexstack.policies.bundles import bundle_dir  # noqa: PLC0415
    from dexstack.policies.checkpoints import RL_GAMES_PREFIX, safe_torch_load  # noqa: PLC0415
    from dexstack.policies.manifest import load_manifest  # noqa: PLC0415

    root = bundle_dir(bundle)
    manifest = load_manifest(root)
    state = safe_torch_load(root / manifest.checkpoint.file)["model"]
    actor = {k[len(RL_GAMES_PREFIX):]: v for k, v in state.items()
             if k.startswith(RL_GAMES_PREFIX) and k != f"{RL_GAMES_PREFIX}sigma"}
    try:
        model.actor.load_state_dict(actor)
    except RuntimeError as exc:
        raise ValueError(f"--init {bundle}: its network does not fit this task: {exc}") from None
    with torch.no_grad():
        model.log_std.copy_(state[f"{RL_GAMES_PREFIX}sigma"].float())
        if "running_mean_std.running_mean" in state:
            model.normalizer.mean.copy_(state["running_mean_std.running_mean"].double())
            model.normalizer.var.copy_(state["running_mean_std.running_var"].double())
            model.normalizer.count.fill_(1e5)  # adapts slowly to the new references' statistics


def export_bundle(model: ActorCritic, out: Path, manifest_yaml: dict) -> None:
    from dexstack.policies.checkpoints import save_rl_games_checkpoint  # noqa: PLC0415
    from dexstack.policies.manifest import write_manifest  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    save_rl_games_checkpoint(out / "model.pt", model.actor, model.normalizer.mean, model.normalizer.var,
                             model.log_std)
    write_manifest(manifest_yaml, out)


def deterministic_actor(model: ActorCritic):
    """What the runtime runs: normalise, actor mean (the runtime clips; the task layer clips the same way)."""
    def act(obs: torch.Tensor) -> torch.Tensor:
        return model.actor(model.normalizer(obs.float()))
    return act


def plot_curves(csv_path: Path, png_path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return False
    x = np.array([float(r["samples"]) for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in ((axes[0], "mean_reward", "mean reward / step"),
                           (axes[1], "success_rate", "training success (last 100 episodes)"),
                           (axes[2], "val_success", "validation success")):
        y = np.array([float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows])
        keep = ~np.isnan(y)
        ax.plot(x[keep], y[keep], "o-" if key == "val_success" else "-", ms=3)
        ax.set_xlabel("samples")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return True


def train(config: TrainConfig, out: Path, progress: bool = True, log=print) -> dict:
    """Train one seed into ``out`` (the best-on-validation bundle, ``last/`` the final one); returns a summary."""
    from dexstack.policies.tracking.references import BASE_SPECS, training_specs, validation_specs  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(1)
    description = load_description(config.profile)
    overrides = {k: v for k, v in (("learning_rate", config.learning_rate), ("desired_kl", config.desired_kl)) if v}
    ppo_config = PPOConfig(critic_warmup_updates=config.critic_warmup, **overrides)
    manifest_yaml = tracking_manifest(len(description.arm_joints), len(description.hand_joints), config.rate_hz,
                                      ppo_config.hidden, config.profile, config.name)
    start = time.monotonic()
    if config.reference_files:
        train_refs = load_reference_files(config.reference_files, description)
        val_refs = load_reference_files(config.validation_files or config.reference_files, description)
        manifest_yaml["description"] = (f"Residual tracking of {len(train_refs)} references from human demos "
                                        f"(dexstack-demo2ref; PPO in the sim cell).")
        (out / "references").mkdir(parents=True, exist_ok=True)  # the bundle carries its references
        for path in config.reference_files:
            shutil.copy2(path, out / "references" / Path(path).name)
        manifest_yaml["reference"] = f"references/{Path(config.reference_files[0]).name}"
    else:
        train_refs = load_references(list(BASE_SPECS.values()) + training_specs(config.train_references,
                                                                                config.seed), description)
        val_refs = load_references(validation_specs(config.validation_references), description)
    manifest = parse_manifest(manifest_yaml)
    log(f"{len(train_refs)} training and {len(val_refs)} validation references in {time.monotonic() - start:.1f} s")
    randomization = Randomization(object_start_xy_m=config.object_start_xy_m,
                                  object_start_yaw_rad=config.object_start_yaw_rad)
    task = TrackingTask(manifest, description, train_refs, device=config.device, randomization=randomization)
    backend = make_backend(config, config.envs, manifest.period_s)
    val_task = TrackingTask(manifest, description, val_refs, randomization=Randomization.none(), device=config.device)
    val_backend = make_backend(config, len(val_refs), manifest.period_s, ideal=True, processes=False)
    out.mkdir(parents=True, exist_ok=True)
    try:
        # one env per group of the pool (a backend without groups: one env), group 0 seeded as a single env was
        from dexstack.policies.tracking.cpu_backend import WorkerPool  # noqa: PLC0415

        parts = backend.groups if isinstance(backend, WorkerPool) else [backend]
        envs = [VecTrackingEnv(task, part, part.n_envs if len(parts) > 1 else config.envs, seed=config.seed + 7919 * g)
                for g, part in enumerate(parts)]
        val_env = VecTrackingEnv(val_task, val_backend, len(val_refs), seed=config.seed, auto_reset=False)
        obs = [env.reset() for env in envs]
        model = ActorCritic(task.obs_size, task.action_size, ppo_config)
        if config.init_bundle:
            init_from_bundle(model, config.init_bundle, description)
            if config.init_std > 0:
                with torch.no_grad():
                    model.log_std.fill_(float(np.log(config.init_std)))
            log(f"actor and normaliser initialised from {config.init_bundle} (action std "
                f"{float(model.log_std.detach().exp().mean()):.3f}, critic warm-up {config.critic_warmup} iterations)")
        ppo = PPO(model, ppo_config)
        curves_path = out / "curves.csv"
        curves = open(curves_path, "w", newline="")  # noqa: SIM115
        writer = csv.writer(curves)
        writer.writerow(CURVE_COLUMNS)
        t_train = time.monotonic()
        deadline = t_train + 60.0 * config.minutes
        iteration = samples = diverged_total = 0
        recent: list[float] = []
        best = {"val_success": -1.0, "val_max_error_m": np.inf, "iteration": 0, "samples": 0}
        if config.init_bundle:
            # the starting actor is a candidate too (iteration 0): measured, PPO with a fresh critic first degrades
            # a fine-tuned actor (track_cube on demo references: validation 5/6 before, 4/6 after one update, 0-1/6
            # for the next 25 minutes), so selection must be able to keep the start
            res = run_episodes(val_env, deterministic_actor(model), torch.arange(len(val_refs)))
            best = {"val_success": float(np.mean(res["success"])),
                    "val_max_error_m": float(np.mean(res["max_position_error_m"])), "iteration": 0, "samples": 0}
            export_bundle(model, out, manifest_yaml)
            writer.writerow([{"iteration": 0, "wall_s": 0.0, "samples": 0, "val_success": best["val_success"],
                              "val_max_error_m": best["val_max_error_m"]}.get(c, "") for c in CURVE_COLUMNS])
            log(f"validation of the --init actor: success {best['val_success']:.2f}, mean max error "
                f"{100 * best['val_max_error_m']:.2f} cm")
        next_validation = t_train
        bar = _progress(progress, config)
        keys = ("obs", "actions", "log_probs", "values", "rewards", "dones")
        sent: list[tuple] = [()] * len(envs)  # per group: what the policy saw and did for the step in flight

        def send(g: int) -> None:
            obs_f = obs[g].float()
            if not config.freeze_normalizer:
                model.normalizer.update(obs_f)
            obs_n = model.normalizer(obs_f)
            actions, log_probs, values = model.act(obs_n)
            sent[g] = (obs_n, actions, log_probs, values)
            envs[g].step_send(actions)

        while (iteration < config.iterations) if config.iterations else (time.monotonic() < deadline):
            parts_buf = [{k: [] for k in keys} for _ in envs]
            diverged = 0  # episodes of this iteration ended by a physics divergence (timestep choice: docs/train.md)
            for g in range(len(envs)):
                send(g)
            for t in range(config.steps):
                for g, env in enumerate(envs):  # while the workers step the other groups
                    obs[g], rewards, dones, info = env.step_recv()
                    for key, value in zip(keys, (*sent[g], rewards.float(), dones.float())):
                        parts_buf[g][key].append(value)
                    recent += info.success[dones].float().tolist()
                    diverged += int(info.diverged.sum())
                    if t + 1 < config.steps:
                        send(g)
            buf = {k: [torch.cat([b[k][t] for b in parts_buf]) for t in range(config.steps)] for k in keys}
            with torch.no_grad():
                last_values = model.critic(model.normalizer(torch.cat(obs).float())).squeeze(-1)
            stats = ppo.update(*(torch.stack(buf[k]) for k in keys), last_values)
            iteration += 1
            samples += config.steps * config.envs
            recent = recent[-100:]
            wall = time.monotonic() - t_train
            val = {"val_success": "", "val_max_error_m": ""}
            if time.monotonic() >= next_validation or (config.iterations and iteration == config.iterations):
                next_validation = time.monotonic() + config.validate_every_s
                res = run_episodes(val_env, deterministic_actor(model), torch.arange(len(val_refs)))
                val = {"val_success": float(np.mean(res["success"])),
                       "val_max_error_m": float(np.mean(res["max_position_error_m"]))}
                if (val["val_success"], -val["val_max_error_m"]) > (best["val_success"], -best["val_max_error_m"]):
                    best = {**val, "iteration": iteration, "samples": samples}
                    export_bundle(model, out, manifest_yaml)
            row = {"iteration": iteration, "wall_s": round(wall, 1), "samples": samples,
                   "samples_per_s": round(samples / max(wall, 1e-9), 1),
                   "mean_reward": round(float(torch.stack(buf["rewards"]).mean()), 4), "episodes": len(recent),
                   "success_rate": round(float(np.mean(recent)), 3) if recent else 0.0, **val,
                   "value_loss": round(stats["value_loss"], 5), "kl": round(stats["kl"], 5),
                   "lr": f"{stats['lr']:.2e}", "std": round(stats["std"], 4), "diverged": diverged}
            diverged_total += diverged
            writer.writerow([row[c] for c in CURVE_COLUMNS])
            curves.flush()
            _advance(bar, config, iteration, wall, row, best)
        curves.close()
        _close(bar)
        export_bundle(model, out / "last", manifest_yaml)
        wall = time.monotonic() - t_train
    finally:
        for b in (backend, val_backend):
            if hasattr(b, "close"):
                b.close()
    plot_curves(curves_path, out / "curves.png")
    return {"seed": config.seed, "iterations": iteration, "samples": samples, "wall_s": round(wall, 1),
            "samples_per_s": round(samples / max(wall, 1e-9), 1), "diverged_episodes": diverged_total, "best": best,
            "config": asdict(config), "ppo": asdict(ppo_config), "validation_references": [r.name for r in val_refs],
            "training_references": len(train_refs)}


def _progress(enabled: bool, config: TrainConfig):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    bar = Progress(TextColumn("[bold]seed {task.fields[seed]}"), BarColumn(), TextColumn("{task.description}"),
                   TimeRemainingColumn())
    bar.start()
    total = config.iterations if config.iterations else 60.0 * config.minutes
    bar.add_task("starting", total=total, seed=config.seed)
    return bar


def _advance(bar, config: TrainConfig, iteration: int, wall: float, row: dict, best: dict) -> None:
    if bar is None:
        return
    bar.update(bar.task_ids[0], completed=iteration if config.iterations else wall,
               description=f"it {iteration} {row['samples_per_s']:.0f} samples/s reward {row['mean_reward']:.3f} "
                           f"train success {row['success_rate']:.2f} best val {best['val_success']:.2f}")


def _close(bar) -> None:
    if bar is not None:
        bar.stop()


def evaluate_heldout(bundle: str | Path, gate: str = "limits", timestep_s: float = 0.001,
                     profile: str = "panda_allegro") -> dict:
    """In-process held-out evaluation through the policy runtime (as the node runs it), the physics behind the
    gate at ``gate`` ("off": the old ungated path), no latency, at the sim cell's own 1 ms timestep by default.
    Returns success rate and episodes."""
    from dexstack.policies import list_references, load_policy, load_reference, reference_path  # noqa: PLC0415
    from dexstack.policies.tracking.env import evaluate  # noqa: PLC0415
    from dexstack.policies.tracking.gated_cell import GatedCell  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415

    description = load_description(profile)
    refs = [load_reference(reference_path(n), description) for n in sorted(list_references())
            if n.startswith("heldout_")]
    policy = load_policy(str(bundle), description)
    backend = GatedCell(policy.manifest.period_s, gate=gate, timestep_s=timestep_s)
    results = evaluate(policy, refs, backend, description)
    return {"success_rate": float(np.mean([r.success for r in results])),
            "episodes": [asdict(r) for r in results]}


def select_best_seed(summaries: list[dict], out: Path) -> dict:
    """Copy the seed whose best validation score is highest into ``out`` (held-out never used to choose)."""
    best = max(summaries, key=lambda s: (s["best"]["val_success"], -s["best"]["val_max_error_m"]))
    src = out / f"seed_{best['seed']}"
    for name in ("policy.yaml", "model.pt", "curves.csv", "curves.png"):
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    if (src / "references").is_dir():
        shutil.copytree(src / "references", out / "references", dirs_exist_ok=True)
    return best


def write_report(out: Path, info: dict) -> None:
    (out / "train.json").write_text(json.dumps(info, indent=1, default=str))
