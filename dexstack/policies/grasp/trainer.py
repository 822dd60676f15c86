"""Grasp policy training (FunGrasp): a PPO teacher with privileged per-link contact forces, then a student without
them (a short observation history) distilled by DAgger. The PPO is the tracking stack's
(:mod:`dexstack.policies.tracking.ppo`); the task is :mod:`dexstack.policies.grasp.task`.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python -m dexstack.policies.grasp.trainer \\
        --out policies/fungrasp_allegro --teacher-minutes 30 --student-minutes 10 --seed 0

Training objects: ``known_objects("train")`` (held-out objects never appear); training episodes and validation
episodes are separate placements (different seeds) of the training objects' library grasps. The shipped bundle is
the student whose validation success is best (validation = training objects, other placements, never held-out).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dexstack.policies.grasp.task import GraspTaskConfig

N_ARM_SCALE, N_HAND_SCALE = 0.04, 0.2  # residual range (rad) per unit action: arm, hand (the tracking policy's)
CURVE_COLUMNS = ["stage", "iteration", "wall_s", "samples", "mean_reward", "episodes", "success_rate", "val_success",
                 "contact_fraction", "value_loss", "kl", "lr", "std", "bc_loss", "beta"]


def grasp_manifest(n_arm: int, n_hand: int, n_links: int, teacher: bool, rate_hz: float = 20.0,
                   hidden: tuple[int, ...] = (256, 128), history: int = 3, profile: str = "panda_allegro",
                   name: str = "fungrasp_allegro") -> dict:
    """The grasp bundle manifest (teacher: + per-link contact forces, no history; student: history)."""
    n = n_arm + n_hand
    obs = [
        {"name": "joint_pos", "size": n},
        {"name": "joint_vel", "size": n, "scale": 0.1},
        {"name": "object_pose", "size": 7},
        {"name": "ref_joint_pos", "size": 3 * n, "steps": [1, 2, 4], "relative": True},
        {"name": "phase", "size": 1},
        {"name": "grasp_palm", "size": 7},
        {"name": "grasp_links", "size": 3 * n_links},
        {"name": "grasp_contact_mask", "size": n_links},
        {"name": "last_action", "size": n},
    ]
    if teacher:
        obs.append({"name": "link_contact_force", "size": n_links, "scale": 0.2})
    return {
        "name": name if not teacher else f"{name}_teacher",
        "type": "grasp",
        "description": ("FunGrasp-style grasp policy: residuals around the planned grasp (pre-grasp, approach, close, "
                        "lift 10 cm, hold) of a retargeted human grasp; " +
                        ("PPO teacher with per-link contact forces." if teacher else
                         f"student distilled by DAgger, {history}-step observation history, no tactile input.")),
        "robot_profile": profile,
        "control_rate_hz": rate_hz,
        "checkpoint": {"file": "model.pt", "format": "rl_games", "hidden": list(hidden), "activation": "elu"},
        "observation": obs,
        "action": {"mode": "residual", "joints": "all", "clip": 1.0,
                   "scale": [N_ARM_SCALE] * n_arm + [N_HAND_SCALE] * n_hand},
        "params": {"history": 1 if teacher else history},
    }


@dataclass(frozen=True)
class GraspTrainConfig:
    teacher_minutes: float = 30.0
    student_minutes: float = 10.0
    teacher_iterations: int = 0  # > 0: stop after this many PPO iterations instead of the time budget
    student_iterations: int = 0
    seed: int = 0
    envs_per_object: int = 3
    steps: int = 32  # steps per environment per PPO iteration / DAgger round
    placements: int = 6  # training placements per library grasp
    validation_placements: int = 1
    validate_every_s: float = 180.0
    history: int = 3
    rate_hz: float = 20.0
    gate: str = "limits"
    timestep_s: float = 0.005
    object_start_xy_m: float = 0.01  # the object's pose error at planning time (perception), per episode
    object_start_yaw_rad: float = 0.1
    objects: tuple[str, ...] = ()  # default: every training object with grasps

    def __post_init__(self) -> None:
        if self.teacher_minutes <= 0 and self.teacher_iterations <= 0:
            raise ValueError("give a positive teacher budget (minutes or iterations)")
        for name in ("envs_per_object", "steps", "placements", "validation_placements", "history"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class GraspTraining:
    """Builds episodes, tasks and physics for a config (shared by the trainer, the bench and tests)."""

    def __init__(self, config: GraspTrainConfig, log=print):
        from dexstack.grasp.human_grasps import library  # noqa: PLC0415
        from dexstack.grasp.verify import VerifiedRetargeter  # noqa: PLC0415
        from dexstack.perception.objects import known_objects  # noqa: PLC0415
        from dexstack.policies.grasp.bank import build_episodes  # noqa: PLC0415
        from dexstack.policies.manifest import parse_manifest  # noqa: PLC0415
        from dexstack.robot import load_description  # noqa: PLC0415

        self.config = config
        self.description = d = load_description("panda_allegro")
        objects = list(config.objects) or [o for o in known_objects("train") if library(o)]
        held = set(known_objects("heldout"))
        if held & set(objects):
            raise ValueError(f"held-out objects {sorted(held & set(objects))} must not be trained on")
        self.objects = objects
        t0 = time.monotonic()
        verifier = VerifiedRetargeter()  # one for both: each library grasp is checked once (memoised)
        self.train_episodes, self.train_counts = build_episodes(objects, config.placements, config.seed, d,
                                                                verifier=verifier)
        self.val_episodes, self.val_counts = build_episodes(objects, config.validation_placements,
                                                            10_000 + config.seed, d, verifier=verifier)
        log(f"{len(self.train_episodes)} training / {len(self.val_episodes)} validation episodes of {objects} "
            f"({self.train_counts}, {self.val_counts}) in {time.monotonic() - t0:.1f} s")
        self.link_names = self.train_episodes[0].target.link_names
        n_arm, n_hand, L = len(d.arm_joints), len(d.hand_joints), len(self.link_names)
        self.teacher_yaml = grasp_manifest(n_arm, n_hand, L, True, config.rate_hz)
        self.student_yaml = grasp_manifest(n_arm, n_hand, L, False, config.rate_hz, history=config.history)
        self.teacher_manifest = parse_manifest(self.teacher_yaml)
        self.student_manifest = parse_manifest(self.student_yaml)
        self.task_config = GraspTaskConfig()

    def task(self, manifest, episodes, randomized: bool):
        from dexstack.policies.grasp.task import GraspTask  # noqa: PLC0415
        from dexstack.policies.tracking.task import Randomization  # noqa: PLC0415

        c = self.config
        r = (Randomization(object_start_xy_m=c.object_start_xy_m, object_start_yaw_rad=c.object_start_yaw_rad)
             if randomized else Randomization.none())
        return GraspTask(manifest, self.description, episodes, self.task_config, r)

    def backend(self, env_object: list[str], ideal: bool, gate: str | None = None, timestep_s: float | None = None):
        from dexstack.policies.grasp.physics import MultiObjectBatch  # noqa: PLC0415
        from dexstack.policies.tracking.cpu_backend import CommandPath  # noqa: PLC0415

        c = self.config
        gate, dt = gate or c.gate, timestep_s or c.timestep_s
        path = CommandPath.ideal(gate, dt) if ideal else CommandPath(gate=gate, timestep_s=dt)
        return MultiObjectBatch(env_object, 1.0 / c.rate_hz, self.link_names, path, seed=c.seed)


def validate(env, act, history: int = 1) -> dict:
    """One episode per env (its episode index = env index) with ``act``; success rate and mean rise."""
    from dexstack.policies.grasp.env import History  # noqa: PLC0415

    n = env.n_envs
    obs = env.reset(torch.arange(n))
    hist = History(n, obs.shape[1], history)
    x = hist.reset(obs)
    done_once = torch.zeros(n, dtype=torch.bool)
    success = torch.zeros(n, dtype=torch.bool)
    rise = torch.zeros(n)
    while not bool(done_once.all()):
        with torch.no_grad():
            raw = act(x)
        obs, _, done, info = env.step(raw)
        x = hist.push(obs, done)
        new = done & ~done_once
        success[new] = info.success[new]
        rise[new] = env.state.rise[new]
        done_once |= done
    return {"success": float(success.float().mean()), "per_episode": success.tolist()}


def _rows(writer, f, row: dict) -> None:
    writer.writerow([row.get(c, "") for c in CURVE_COLUMNS])
    f.flush()


def train(config: GraspTrainConfig, out: Path, log=print) -> dict:
    """Teacher (PPO) then student (DAgger) into ``out``; returns the summary written to ``train.json``."""
    from dexstack.policies.grasp.env import VecGraspEnv  # noqa: PLC0415
    from dexstack.policies.tracking.ppo import PPO, ActorCritic, PPOConfig  # noqa: PLC0415
    from dexstack.policies.tracking.trainer import deterministic_actor, export_bundle  # noqa: PLC0415

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    setup = GraspTraining(config, log)
    env_object = [o for o in setup.objects for _ in range(config.envs_per_object)
                  if any(e.object_name == o for e in setup.train_episodes)]
    teacher_task = setup.task(setup.teacher_manifest, setup.train_episodes, randomized=True)
    student_task = setup.task(setup.student_manifest, setup.train_episodes, randomized=True)
    backend = setup.backend(env_object, ideal=False)
    val_objects = [e.object_name for e in setup.val_episodes]
    val_teacher = VecGraspEnv(setup.task(setup.teacher_manifest, setup.val_episodes, False),
                              setup.backend(val_objects, ideal=True), seed=config.seed, auto_reset=False)
    val_student_task = setup.task(setup.student_manifest, setup.val_episodes, False)
    env = VecGraspEnv(teacher_task, backend, seed=config.seed)
    n_envs = env.n_envs
    ppo_config = PPOConfig()
    model = ActorCritic(teacher_task.obs_size, teacher_task.action_size, ppo_config)
    ppo = PPO(model, ppo_config)
    curves_f = open(out / "curves.csv", "w", newline="")  # noqa: SIM115
    writer = csv.writer(curves_f)
    writer.writerow(CURVE_COLUMNS)
    summary: dict = {"config": asdict(config), "ppo": asdict(ppo_config), "task": asdict(setup.task_config),
                     "objects": setup.objects, "train_episodes": len(setup.train_episodes),
                     "validation_episodes": len(setup.val_episodes), "episode_counts": setup.train_counts,
                     "n_envs": n_envs}
    # zero-residual validation: the planned reference alone (= the open-loop baseline on this physics)
    zero = validate(val_teacher, lambda x: torch.zeros(x.shape[0], teacher_task.action_size))
    summary["val_success_zero_residual"] = zero["success"]
    log(f"validation success of the planned reference alone (zero residual): {zero['success']:.3f}")
    t0 = time.monotonic()
    # ------------------------------------------------------------------------------------------ teacher: PPO
    teacher_dir = out / "teacher"
    deadline = t0 + 60 * config.teacher_minutes
    obs = env.reset()
    iteration = samples = 0
    recent: list[float] = []
    best = {"val_success": -1.0, "iteration": 0}
    next_val = time.monotonic() + config.validate_every_s
    while (iteration < config.teacher_iterations) if config.teacher_iterations else time.monotonic() < deadline:
        buf = {k: [] for k in ("obs", "actions", "log_probs", "values", "rewards", "dones")}
        contact = []
        for _ in range(config.steps):
            obs_f = obs.float()
            model.normalizer.update(obs_f)
            obs_n = model.normalizer(obs_f)
            actions, log_probs, values = model.act(obs_n)
            obs, rewards, dones, info = env.step(actions)
            for key, value in (("obs", obs_n), ("actions", actions), ("log_probs", log_probs), ("values", values),
                               ("rewards", rewards.float()), ("dones", dones.float())):
                buf[key].append(value)
            contact.append(float(env.state.parts["contact_fraction"].mean()))
            recent += info.success[dones].float().tolist()
        with torch.no_grad():
            last_values = model.critic(model.normalizer(obs.float())).squeeze(-1)
        stats = ppo.update(*(torch.stack(buf[k]) for k in ("obs", "actions", "log_probs", "values", "rewards",
                                                             "dones")), last_values)
        iteration += 1
        samples += config.steps * n_envs
        recent = recent[-100:]
        row = {"stage": "teacher", "iteration": iteration, "wall_s": round(time.monotonic() - t0, 1),
               "samples": samples, "mean_reward": round(float(torch.stack(buf["rewards"]).mean()), 4),
               "episodes": len(recent), "success_rate": round(float(np.mean(recent)), 3) if recent else 0.0,
               "contact_fraction": round(float(np.mean(contact)), 3), "value_loss": round(stats["value_loss"], 5),
               "kl": round(stats["kl"], 5), "lr": f"{stats['lr']:.2e}", "std": round(stats["std"], 4)}
        last = bool(config.teacher_iterations and iteration == config.teacher_iterations) or (
            not config.teacher_iterations and time.monotonic() + 6 * (time.monotonic() - t0) / iteration > deadline
            and iteration % 5 == 0)
        if time.monotonic() >= next_val or last:
            next_val = time.monotonic() + config.validate_every_s
            val = validate(val_teacher, deterministic_actor(model))
            row["val_success"] = val["success"]
            if val["success"] > best["val_success"]:
                best = {"val_success": val["success"], "iteration": iteration, "samples": samples}
                export_bundle(model, teacher_dir, setup.teacher_yaml)
        _rows(writer, curves_f, row)
        log(json.dumps(row))
    if best["val_success"] < 0:  # no validation ran (tiny budgets): keep the last teacher
        export_bundle(model, teacher_dir, setup.teacher_yaml)
    summary["teacher"] = {"iterations": iteration, "samples": samples, "wall_s": round(time.monotonic() - t0, 1),
                          "best": best}
    # the best teacher labels the student's data
    teacher = ActorCritic(teacher_task.obs_size, teacher_task.action_size, ppo_config)
    _load_actor(teacher, teacher_dir / "model.pt")
    teacher_act = deterministic_actor(teacher)
    # ------------------------------------------------------------------------------------------ student: DAgger
    student = _distill(config, setup, env, student_task, teacher_act, model.log_std.detach(), val_teacher,
                       val_student_task, out, writer, curves_f, summary, t0, log)
    curves_f.close()
    summary["student"] = student
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    plot_curves(out / "curves.csv", out / "curves.png")
    (out / "train.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _load_actor(model, path: Path) -> None:
    from dexstack.policies.checkpoints import RL_GAMES_PREFIX, safe_torch_load  # noqa: PLC0415

    state = safe_torch_load(path)["model"]
    model.actor.load_state_dict({k[len(RL_GAMES_PREFIX):]: v for k, v in state.items()
                                 if k.startswith(RL_GAMES_PREFIX) and k != f"{RL_GAMES_PREFIX}sigma"})
    with torch.no_grad():
        model.normalizer.mean.copy_(state["running_mean_std.running_mean"].double())
        model.normalizer.var.copy_(state["running_mean_std.running_var"].double())


def _distill(config, setup, env, student_task, teacher_act, log_std, val_teacher, val_student_task, out, writer,
             curves_f, summary, t0, log) -> dict:
    """DAgger: roll out (teacher with probability beta per round, else the student), label every visited state
    with the teacher's action, fit the student on everything so far (MSE), validate, keep the best."""
    from dexstack.policies.checkpoints import save_rl_games_checkpoint  # noqa: PLC0415
    from dexstack.policies.grasp.env import History, VecGraspEnv  # noqa: PLC0415
    from dexstack.policies.manifest import write_manifest  # noqa: PLC0415
    from dexstack.policies.networks import RlGamesActor  # noqa: PLC0415
    from dexstack.policies.tracking.ppo import RunningMeanStd  # noqa: PLC0415

    H = config.history
    n = env.n_envs
    size = student_task.obs_size * H
    actor = RlGamesActor(size, (256, 128), student_task.action_size, "elu")
    norm = RunningMeanStd(size)
    opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    data_x, data_y = [], []
    deadline = time.monotonic() + 60 * config.student_minutes
    obs_t = env.reset()
    obs_s = student_task.observe(env.state, env.observed)
    hist = History(n, student_task.obs_size, H)
    x = hist.reset(obs_s)
    rounds, best = 0, {"val_success": -1.0, "round": 0}
    val_student = VecGraspEnv(val_student_task, val_teacher.backend, seed=config.seed, auto_reset=False)

    def student_act(xx):
        return actor(norm(xx.float()))

    while (rounds < config.student_iterations) if config.student_iterations else time.monotonic() < deadline:
        beta = 1.0 if rounds == 0 else 0.5 ** rounds
        for _ in range(config.steps * 2):
            with torch.no_grad():
                label = teacher_act(obs_t)
                use_teacher = torch.rand(n) < beta
                act = torch.where(use_teacher[:, None], label, student_act(x))
            data_x.append(x.clone())
            data_y.append(label.clone())
            obs_t, _, done, _ = env.step(act)
            obs_s = student_task.observe(env.state, env.observed)
            x = hist.push(obs_s, done)
        X, Y = torch.cat(data_x), torch.cat(data_y).clamp(-1.0, 1.0)
        norm.update(X[-config.steps * 2 * n:])
        losses = []
        for _ in range(20):
            for idx in torch.randperm(len(X)).chunk(max(1, len(X) // 512)):
                loss = ((actor(norm(X[idx])) - Y[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        rounds += 1
        val = validate(val_student, student_act, H)
        row = {"stage": "student", "iteration": rounds, "wall_s": round(time.monotonic() - t0, 1),
               "samples": len(X), "val_success": val["success"], "bc_loss": round(float(np.mean(losses[-10:])), 5),
               "beta": round(beta, 3)}
        _rows(writer, curves_f, row)
        log(json.dumps(row))
        if val["success"] > best["val_success"]:
            best = {"val_success": val["success"], "round": rounds, "samples": len(X)}
            save_rl_games_checkpoint(out / "model.pt", actor, norm.mean, norm.var, log_std)
            write_manifest(setup.student_yaml, out)
    return {"rounds": rounds, "best": best, "dataset": len(torch.cat(data_x)) if data_x else 0}


def plot_curves(csv_path: Path, png_path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    rows = list(csv.DictReader(open(csv_path)))  # noqa: SIM115
    teacher = [r for r in rows if r["stage"] == "teacher"]
    student = [r for r in rows if r["stage"] == "student"]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    rewards = np.array([float(r["mean_reward"]) for r in teacher])
    ax[0].plot([float(r["samples"]) for r in teacher], rewards)
    ax[0].set(title="teacher mean reward / step", xlabel="samples")
    if len(rewards) > 4:  # a physics blow-up batch would flatten the rest: zoom on the 5-100th percentiles
        lo, hi = np.percentile(rewards, [5, 100])
        ax[0].set_ylim(lo - 0.2 * (hi - lo), hi + 0.1 * (hi - lo))
        if rewards.min() < lo - 0.2 * (hi - lo):
            ax[0].set_title(f"teacher mean reward / step (min {rewards.min():.3g}, off scale)", fontsize=9)
    xs = [float(r["samples"]) for r in teacher]
    ax[1].plot(xs, [float(r["success_rate"]) for r in teacher], label="train (last 100 episodes)")
    ax[1].plot(xs, [float(r["contact_fraction"]) for r in teacher], label="contact fraction")
    v = [(float(r["samples"]), float(r["val_success"])) for r in teacher if r["val_success"]]
    if v:
        ax[1].plot(*zip(*v), "o-", label="validation success")
    ax[1].set(title="teacher", xlabel="samples", ylim=(0, 1))
    ax[1].legend(fontsize=7)
    if student:
        ax[2].plot([int(r["iteration"]) for r in student], [float(r["val_success"]) for r in student], "o-",
                   label="validation success")
        ax[2].plot([int(r["iteration"]) for r in student], [float(r["bc_loss"]) for r in student], label="MSE")
        ax[2].legend(fontsize=7)
    ax[2].set(title="student (DAgger)", xlabel="round")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    for f in ("teacher_minutes", "student_minutes", "teacher_iterations", "student_iterations", "seed",
              "envs_per_object", "steps", "placements", "validation_placements", "validate_every_s", "history"):
        default = getattr(GraspTrainConfig, f)
        parser.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--objects", nargs="*", default=[])
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in vars(args).items() if k not in ("out", "objects")}
    config = GraspTrainConfig(**kwargs, objects=tuple(args.objects))
    summary = train(config, args.out)
    print(json.dumps({k: summary[k] for k in ("teacher", "student", "val_success_zero_residual", "wall_s")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
