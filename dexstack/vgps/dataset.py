"""Offline RL data from recorded episodes (the recorder's rosbag2 MCAP): (obs, action, reward, done, mc_return).

The observation is rebuilt with the policy's own :class:`~dexstack.policies.observation.ObservationBuilder` and the
action with the inverse of its :class:`~dexstack.policies.action.ActionMapper`, so the critic sees exactly the layout
the policy sees. One control step per command the policy sent (``/dexstack/arm/command``, before the safety gate):

- times are the recorder's receive (log) times, one clock for every topic whatever the publishers stamp (the policy
  node does not stamp its commands; the sim may stamp with /clock): ``t_k`` = the command's; episode time =
  ``t_k - t_0`` rounded to the control period (the node steps on a fixed grid from its first step, which is the
  first command); the state = the latest ``/joint_states`` and object pose (``/dexstack/object_pose``, or the sim's
  ``/dexstack/sim/object_pose_gt`` when the episode has no estimate) at or before ``t_k``; the hand target = the
  ``/dexstack/hand/command`` nearest ``t_k`` (within half a period). Episodes must start with the policy's episode
  clock (enable or ``~/restart`` the policy right after the recorder's ``~/start``). Measured on a ROS recording,
  the rebuilt actions are within 0.06 (median, raw units) of the policy's own: receipt-time jitter, and a raw
  action beyond a joint limit is only seen as the limit; in-process recordings rebuild exactly;
- raw action ``a_k = (target_k - base_k) / scale`` (residual: base = reference at ``t_k + period``; delta: the previous
  target; absolute: the offset), clipped to the policy's ``[-clip, clip]`` = [-1, 1] for the tracking bundle;
- the reference: ``reference=<name>`` in the episode's task text (else the task text itself), looked up in
  ``<episodes>/references/`` and then the policy bundles' references; the task code is the reference's kind.

Rewards are V-GPS's sparse ones: the last ``positive_steps`` (3) steps of an episode marked successful get 1, all
others 0; every episode ends with ``done`` on its last step; ``mc_return[k] = sum_j gamma^j r_{k+j}`` (gamma 0.98),
Cal-QL's lower bound. Episodes without a success label are skipped (reason in the report).

The LeRobot export is not read: it carries joint positions and gated driver commands only (no velocities, object
pose or pre-gate policy actions), from which the policy's observation cannot be rebuilt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dexstack.policies.action import ActionMapper
from dexstack.policies.bundles import reference_path
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import PolicyManifest
from dexstack.policies.observation import ObservationBuilder, RobotState, StepContext
from dexstack.policies.reference import ReferenceTrajectory, load_reference
from dexstack.record.episode import load_episode_info
from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry

STATE_TOPIC = "/joint_states"
OBJECT_TOPIC = "/dexstack/object_pose"
OBJECT_GT_TOPIC = "/dexstack/sim/object_pose_gt"
ARM_TOPIC = "/dexstack/arm/command"
HAND_TOPIC = "/dexstack/hand/command"
REFERENCES_SUBDIR = "references"
GAMMA = 0.98
POSITIVE_STEPS = 3


def sparse_rewards(n_steps: int, success: bool, positive_steps: int = POSITIVE_STEPS) -> np.ndarray:
    r = np.zeros(n_steps, dtype=np.float32)
    if success and n_steps:
        r[-min(positive_steps, n_steps):] = 1.0
    return r


def mc_returns(rewards: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """Discounted return-to-go of one episode that ends (done) on its last step: G_k = r_k + gamma * G_{k+1}."""
    out = np.zeros(len(rewards), dtype=np.float64)
    g = 0.0
    for k in range(len(rewards) - 1, -1, -1):
        g = float(rewards[k]) + gamma * g
        out[k] = g
    return out.astype(np.float32)


@dataclass
class Episode:
    obs: np.ndarray  # (T, D)
    actions: np.ndarray  # (T, A) raw, in [-clip, clip]
    success: bool
    task: str
    source: str = ""
    action_low: np.ndarray | None = None  # (T, A): raw actions below act like this one (joint limits, clip)
    action_high: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.obs)


@dataclass
class Transitions:
    """Flat arrays over all steps of all episodes (float32)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    mc_returns: np.ndarray
    next_obs: np.ndarray
    task_codes: np.ndarray
    episode_index: np.ndarray
    action_low: np.ndarray  # (N, A) per state: the raw range that acts differently (joint limits, clip)
    action_high: np.ndarray
    next_action_low: np.ndarray
    next_action_high: np.ndarray
    tasks: tuple[str, ...]
    episodes: int
    successes: int
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.obs)

    def subset(self, episode_mask: np.ndarray) -> Transitions:
        keep = episode_mask[self.episode_index]
        ids = np.unique(self.episode_index[keep])
        succ = int(sum(self.rewards[keep & (self.episode_index == i)].sum() > 0 for i in ids))
        return Transitions(self.obs[keep], self.actions[keep], self.rewards[keep], self.dones[keep],
                           self.mc_returns[keep], self.next_obs[keep], self.task_codes[keep],
                           self.episode_index[keep], self.action_low[keep], self.action_high[keep],
                           self.next_action_low[keep], self.next_action_high[keep], self.tasks, len(ids), succ)


def to_transitions(episodes: list[Episode], tasks: tuple[str, ...] | None = None, gamma: float = GAMMA,
                   positive_steps: int = POSITIVE_STEPS) -> Transitions:
    if not episodes:
        raise ValueError("no episodes to build transitions from")
    tasks = tuple(sorted({e.task for e in episodes})) if tasks is None else tuple(tasks)
    keys = ("obs", "act", "rew", "done", "mc", "next", "task", "ep", "lo", "hi", "nlo", "nhi")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for i, e in enumerate(episodes):
        n = len(e)
        r = sparse_rewards(n, e.success, positive_steps)
        d = np.zeros(n, dtype=np.float32)
        d[-1] = 1.0
        code = np.zeros((n, len(tasks)), dtype=np.float32)
        if e.task in tasks:
            code[:, tasks.index(e.task)] = 1.0
        parts["obs"].append(e.obs)
        parts["act"].append(e.actions)
        parts["rew"].append(r)
        parts["done"].append(d)
        parts["mc"].append(mc_returns(r, gamma))
        parts["next"].append(np.concatenate([e.obs[1:], e.obs[-1:]]))
        parts["task"].append(code)
        parts["ep"].append(np.full(n, i, dtype=np.int64))
        lo = e.action_low if e.action_low is not None else np.full_like(e.actions, -np.inf)
        hi = e.action_high if e.action_high is not None else np.full_like(e.actions, np.inf)
        parts["lo"].append(lo)
        parts["hi"].append(hi)
        parts["nlo"].append(np.concatenate([lo[1:], lo[-1:]]))
        parts["nhi"].append(np.concatenate([hi[1:], hi[-1:]]))
    cat = {k: np.concatenate(v).astype(np.float32) if k != "ep" else np.concatenate(v) for k, v in parts.items()}
    return Transitions(cat["obs"], cat["act"], cat["rew"], cat["done"], cat["mc"], cat["next"], cat["task"],
                       cat["ep"], cat["lo"], cat["hi"], cat["nlo"], cat["nhi"], tasks, len(episodes),
                       sum(e.success for e in episodes))


# ---------------------------------------------------------------------------------------------- reading MCAP
def _latest(stamps: np.ndarray, t: int) -> int:
    return int(np.searchsorted(stamps, t, side="right")) - 1


def reference_name(task: str) -> str:
    match = re.search(r"reference=(\S+)", task)
    return match.group(1) if match else task.strip()


def find_reference(name: str, episodes_root: Path, description) -> ReferenceTrajectory:
    local = Path(episodes_root) / REFERENCES_SUBDIR / f"{name}.npz"
    path = local if local.is_file() else reference_path(name)
    return load_reference(path, description)


def read_episode(episode_dir: Path, manifest: PolicyManifest, description, episodes_root: Path | None = None,
                 registry: TypeRegistry | None = None) -> Episode:
    """One recorded episode as the policy's (observations, raw actions); ValueError/PolicyError with the reason."""
    episode_dir = Path(episode_dir)
    registry = registry or TypeRegistry()
    info = load_episode_info(episode_dir)
    if info.success is None:
        raise ValueError("no success label (set it with the recorder's ~/set_success)")
    if info.robot_profile and info.robot_profile != description.profile.name:
        raise ValueError(f"recorded on robot '{info.robot_profile}', not '{description.profile.name}'")
    mcaps = sorted(episode_dir.glob("*.mcap"))
    if not mcaps:
        raise ValueError("no .mcap file")
    reference = find_reference(reference_name(info.task), episodes_root or episode_dir.parent, description)
    col = {n: i for i, n in enumerate(description.joints)}
    n_arm = len(description.arm_joints)
    states, arms, hands = [], [], []
    poses: dict[str, list] = {OBJECT_TOPIC: [], OBJECT_GT_TOPIC: []}
    for m in iter_messages(mcaps[0], {STATE_TOPIC, OBJECT_TOPIC, OBJECT_GT_TOPIC, ARM_TOPIC, HAND_TOPIC}):
        if m.topic == STATE_TOPIC:
            msg = registry.decode(m.data, m.type_name)
            q = np.full(len(col), np.nan)
            dq = np.zeros(len(col))
            have_vel = len(msg.velocity) == len(msg.name)
            for k, name in enumerate(msg.name):
                if name in col:
                    q[col[name]] = msg.position[k]
                    dq[col[name]] = msg.velocity[k] if have_vel else 0.0
            states.append((m.log_time_ns, q, dq))
        elif m.topic in poses:
            msg = registry.decode(m.data, m.type_name)
            p, o = msg.pose.position, msg.pose.orientation
            poses[m.topic].append((m.log_time_ns, np.array([p.x, p.y, p.z, o.x, o.y, o.z, o.w])))
        elif m.topic == ARM_TOPIC:
            msg = registry.decode(m.data, m.type_name)
            if msg.points:
                target = dict(zip(msg.joint_names, msg.points[-1].positions))
                if all(n in target for n in description.arm_joints):
                    arms.append((m.log_time_ns, np.array([target[n] for n in description.arm_joints])))
        elif m.topic == HAND_TOPIC:
            msg = registry.decode(m.data, m.type_name)
            if len(msg.data) == len(description.hand_joints):
                hands.append((m.log_time_ns, np.array(msg.data, dtype=float)))
    if len(arms) < 2 or not states:
        raise ValueError(f"too few policy commands ({len(arms)} on {ARM_TOPIC}) or no {STATE_TOPIC}")
    objects = poses[OBJECT_TOPIC] or poses[OBJECT_GT_TOPIC]
    states.sort(key=lambda x: x[0])
    objects.sort(key=lambda x: x[0])
    arms.sort(key=lambda x: x[0])
    hands.sort(key=lambda x: x[0])
    s_t = np.array([s[0] for s in states], dtype=np.int64)
    o_t = np.array([o[0] for o in objects], dtype=np.int64)
    h_t = np.array([h[0] for h in hands], dtype=np.int64)
    builder = ObservationBuilder(manifest, description)
    mapper = ActionMapper(manifest.action, description)
    period = manifest.period_s
    clip = manifest.action.clip
    t0 = arms[0][0]
    q_last = None
    hand_target = None
    last_target = None
    last_action = np.zeros(mapper.size)
    obs_list, act_list, lo_list, hi_list = [], [], [], []
    lower, upper = mapper.lower[mapper.index], mapper.upper[mapper.index]
    for t_ns, arm_target in arms:
        i = _latest(s_t, t_ns)
        if i < 0:
            continue
        _, q, dq = states[i]
        if np.any(np.isnan(q)):  # separate arm/hand joint messages: fill from the previous full state
            if q_last is None:
                continue
            q = np.where(np.isnan(q), q_last, q)
        q_last = q
        j = _latest(o_t, t_ns)
        obj = objects[j][1] if j >= 0 else None
        if len(h_t):
            h = int(np.argmin(np.abs(h_t - t_ns)))
            if abs(int(h_t[h]) - t_ns) <= 0.5e9 * period:
                hand_target = hands[h][1]
        target = np.array(q if last_target is None else last_target, dtype=float)
        target[:n_arm] = arm_target
        if hand_target is not None:
            target[n_arm:] = hand_target
        t_s = round((t_ns - t0) * 1e-9 / period) * period  # the node steps on a fixed grid; receipt times jitter
        ctx = StepContext(state=RobotState(q=q, dq=dq, object_pose=obj), t_s=t_s, period_s=period,
                          reference=reference, last_target=last_target if last_target is not None else q,
                          last_action=last_action)
        try:
            obs = builder.build(ctx)
        except PolicyError:
            continue  # e.g. no object pose yet: the policy could not have acted on this step either
        base = mapper.base(ctx)
        b = base[mapper.index]
        raw = (target[mapper.index] - b) / mapper.scale
        lo_raw, hi_raw = (lower - b) / mapper.scale, (upper - b) / mapper.scale  # the limits in raw units
        lo, hi = np.minimum(lo_raw, hi_raw), np.maximum(lo_raw, hi_raw)
        if clip is not None:
            raw = np.clip(raw, -clip, clip)
            lo, hi = np.clip(lo, -clip, clip), np.clip(hi, -clip, clip)
        obs_list.append(obs)
        act_list.append(raw)
        lo_list.append(lo)
        hi_list.append(hi)
        last_action, last_target = raw, target
    if len(obs_list) < 2:
        raise ValueError("fewer than 2 steps with a complete observation")
    return Episode(np.array(obs_list, dtype=np.float32), np.array(act_list, dtype=np.float32), bool(info.success),
                   reference.kind, str(episode_dir), np.array(lo_list, dtype=np.float32),
                   np.array(hi_list, dtype=np.float32))


def read_episodes(root: Path, manifest: PolicyManifest, description) -> tuple[list[Episode], dict[str, str]]:
    """Every ``episode_*`` folder under ``root`` (sorted); (episodes, {folder: reason skipped})."""
    root = Path(root)
    dirs = sorted(p for p in root.glob("episode_*") if p.is_dir())
    if not dirs:
        raise FileNotFoundError(f"no episode_* folders under {root}")
    registry = TypeRegistry()
    episodes, skipped = [], {}
    for d in dirs:
        try:
            episodes.append(read_episode(d, manifest, description, root, registry))
        except (ValueError, PolicyError, OSError) as exc:
            skipped[str(d)] = str(exc)
    return episodes, skipped


def load_transitions(root: Path, manifest: PolicyManifest, description, gamma: float = GAMMA,
                     tasks: tuple[str, ...] | None = None) -> Transitions:
    episodes, skipped = read_episodes(root, manifest, description)
    if not episodes:
        raise ValueError(f"no usable episodes under {root}: {skipped}")
    data = to_transitions(episodes, tasks, gamma)
    data.skipped = skipped
    return data
