"""PolicyRuntime: one active policy, stepped by the control thread; new policies load elsewhere and take over at a
step boundary.

Threads:

- the **control thread** calls :meth:`PolicyRuntime.step` once per control period. It never loads anything: at the
  start of a step it picks up a staged policy (a pointer swap under a lock), resets it, and steps it;
- a **loader thread** (:meth:`prepare` / :meth:`load`) resolves, reads, builds and validates bundles; whoever asked
  (the node's parameter callback) then :meth:`stage`-s the result or reports the error. The running policy keeps
  running meanwhile, and keeps running if the new bundle is rejected.

The episode clock (``t`` of the reference) starts at the first step and is kept across swaps, so a replay can hand
over to a tracking policy mid-trajectory; it restarts when the reference changes, on :meth:`restart`, and when the
node is re-enabled.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from dexstack.policies.action import JointTargets
from dexstack.policies.errors import PolicyError
from dexstack.policies.observation import RobotState, StepContext
from dexstack.policies.reference import ReferenceTrajectory
from dexstack.policies.registry import Policy, load_policy
from dexstack.robot.description import RobotDescription


@dataclass
class InputCache:
    """Latest joint state, object pose and hand keypoints with their arrival times (thread-safe).

    Joint messages may carry only some joints (separate arm and hand drivers); a state is complete when every
    joint was updated within ``timeout_s``.
    """

    joints: tuple[str, ...]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        n = len(self.joints)
        self._index = {name: i for i, name in enumerate(self.joints)}
        self._q = np.full(n, np.nan)
        self._dq = np.zeros(n)
        self._stamp = np.full(n, -np.inf)
        self._object: tuple[np.ndarray, float] | None = None
        self._object_key = None  # what identifies the held object pose (see drop_object)
        self._keypoints: tuple[np.ndarray | None, float] | None = None

    def update_joints(self, names, positions, velocities, now_s: float) -> None:
        with self._lock:
            have_vel = len(velocities) == len(names)
            for k, name in enumerate(names):
                i = self._index.get(name)
                if i is not None:
                    self._q[i] = positions[k]
                    self._dq[i] = velocities[k] if have_vel else 0.0
                    self._stamp[i] = now_s

    def update_object(self, pose_xyz_xyzw: np.ndarray, now_s: float, key=None) -> None:
        """A new object pose; ``key`` identifies it for a later :meth:`drop_object`."""
        with self._lock:
            self._object = (np.asarray(pose_xyz_xyzw, dtype=float), now_s)
            self._object_key = key

    def drop_object(self, key) -> bool:
        """Forget the object pose if it is the one identified by ``key`` (it turned out unusable); True if so."""
        with self._lock:
            if self._object is None or key is None or self._object_key != key:
                return False
            self._object, self._object_key = None, None
            return True

    def update_keypoints(self, keypoints: np.ndarray | None, now_s: float) -> None:
        with self._lock:
            self._keypoints = (None if keypoints is None else np.asarray(keypoints, dtype=float), now_s)

    def missing_joints(self, now_s: float, timeout_s: float) -> list[str]:
        with self._lock:
            return [n for n, t in zip(self.joints, self._stamp) if now_s - t > timeout_s]

    def state(self, now_s: float, timeout_s: float, object_timeout_s: float | None = None) -> RobotState | None:
        """The robot state if every joint is fresh; object pose / keypoints are None when older than
        ``object_timeout_s`` (default ``timeout_s``)."""
        object_timeout_s = timeout_s if object_timeout_s is None else object_timeout_s
        with self._lock:
            if np.any(now_s - self._stamp > timeout_s) or not np.all(np.isfinite(self._q)):
                return None
            obj = self._object[0].copy() if self._object and now_s - self._object[1] <= object_timeout_s else None
            kp = self._keypoints[0] if self._keypoints and now_s - self._keypoints[1] <= object_timeout_s else None
            return RobotState(q=self._q.copy(), dq=self._dq.copy(), object_pose=obj,
                              hand_keypoints=None if kp is None else kp.copy(), stamp_s=float(np.max(self._stamp)))


class PolicyRuntime:
    def __init__(self, description: RobotDescription, device: str = "cpu"):
        self.description = description
        self.device = device
        self.rate_override_hz = 0.0  # > 0: run at this rate instead of the bundle's
        self.swaps = 0
        self.steps = 0
        self.last_target: np.ndarray | None = None
        self._t0_s: float | None = None
        self._active: Policy | None = None
        self._staged: tuple[Policy | None] | None = None  # (policy,) or (None,) to stop; None: nothing staged
        self._restart = False
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-loader")

    # ------------------------------------------------------------------ any thread
    @property
    def active(self) -> Policy | None:
        return self._active

    @property
    def period_s(self) -> float:
        if self.rate_override_hz > 0:
            return 1.0 / self.rate_override_hz
        policy = self._active
        return policy.manifest.period_s if policy is not None else 0.01

    def episode_time_s(self, now_s: float) -> float | None:
        return None if self._t0_s is None else now_s - self._t0_s

    def prepare(self, name_or_path: str, reference: str | ReferenceTrajectory | None = None,
                device: str | None = None, params: dict | None = None) -> Future:
        """Load and validate a bundle on the loader thread; the future holds the policy or a PolicyError."""
        return self._loader.submit(load_policy, name_or_path, self.description, device or self.device, reference,
                                   params)

    def load(self, name_or_path: str, reference: str | ReferenceTrajectory | None = None,
             device: str | None = None, timeout_s: float = 30.0, params: dict | None = None) -> Policy:
        """:meth:`prepare` and wait (the caller's thread waits; the control thread does not)."""
        future = self.prepare(name_or_path, reference, device, params)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise PolicyError(f"loading policy '{name_or_path}' took longer than {timeout_s} s") from None

    def stage(self, policy: Policy | None) -> None:
        """``policy`` takes over at the next step boundary (None: stop stepping; nothing is sent)."""
        with self._lock:
            self._staged = (policy,)

    def restart(self) -> None:
        """Start the episode clock again at the next step (the reference plays from its beginning)."""
        with self._lock:
            self._restart = True

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ control thread
    def step(self, state: RobotState, now_s: float) -> JointTargets | None:
        """One control step: swap in a staged policy if there is one, then act. Raises PolicyError on bad input."""
        with self._lock:
            staged, self._staged = self._staged, None
            restart, self._restart = self._restart, False
        fresh = False
        if staged is not None:
            old, new = self._active, staged[0]
            if old is not None and new is not None:
                self.swaps += 1
            if new is not None and (old is None or _reference_key(old) != _reference_key(new)):
                restart = True
            self._active, fresh = new, True
        policy = self._active
        if policy is None:
            return None
        if restart or self._t0_s is None:
            self._t0_s, fresh = now_s, True
            if restart or self.last_target is None:  # a new episode: delta actions start from where the robot is
                self.last_target = np.array(state.q, dtype=float)
        ctx = StepContext(state=state, t_s=now_s - self._t0_s, period_s=self.period_s, reference=policy.reference,
                          last_target=self.last_target, now_s=now_s)
        if fresh:
            policy.reset(ctx)
        targets = policy.act(ctx)
        self.steps += 1
        if targets is not None:
            self.last_target = targets.full(self.last_target, len(self.description.arm_joints))
        return targets


def _reference_key(policy: Policy) -> str | None:
    ref = policy.reference
    return None if ref is None else f"{ref.name}:{ref.duration_s:.6f}:{ref.q_rad.shape}"
