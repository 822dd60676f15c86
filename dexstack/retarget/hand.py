"""Human hand keypoints -> robot hand joint targets (vector, position and DexPilot retargeting).

:class:`HandRetargeter` minimises, per call (see :mod:`dexstack.retarget.config`)::

    E(q) = 1/K sum_k c_k SmoothL1_beta(|r_k(q)|) + reg_weight |q - q_prev|^2,   lower <= q <= upper
    r_k(q) = p_a_k(q) - p_b_k(q) - t_k          (p: link positions in the hand root frame, m)

with a warm-started Gauss-Newton / Levenberg-Marquardt solver on the iteratively reweighted (Huber) normal
equations, analytic Jacobians from pinocchio (one ``computeJointJacobians`` per iteration), a projected-Newton
active set for the joint limits, a trust region and step halving if a step increases ``E``. ``q_prev`` is the
previous solution (temporal smoothness; it also fixes the redundant directions), and an optional low-pass filter
smooths the output.

Input: keypoints (21, 3) in the human hand frame ``H`` (metres, :mod:`dexstack.retarget.keypoints`). Output: joint
positions (rad) in ``description.hand_joints`` order, within the description's limits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from dexstack.retarget.config import HandRetargetConfig, load_retarget_config, retarget_config_for
from dexstack.retarget.hand_model import HandModel
from dexstack.retarget.keypoints import check_keypoints
from dexstack.robot.description import RobotDescription, load_description
from dexstack.robot.profile import ProfileError, load_profile

log = logging.getLogger(__name__)


@dataclass
class SolveInfo:
    """Diagnostics of the last :meth:`HandRetargeter.retarget` call."""

    iterations: int = 0  # FK + Jacobian evaluations
    converged: bool = False  # last step below ``solver.step_tol_rad``
    residuals_m: np.ndarray | None = None  # |r_k| per term at the last accepted iterate (before its final step)
    pinched: tuple[bool, ...] = ()  # DexPilot: projection state of each fingertip pair


def bounded_newton_step(H: np.ndarray, g: np.ndarray, q: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                        max_step: float) -> tuple[np.ndarray, float]:
    """Step ``dq`` (and ``max|dq|``) minimising ``g.dq + dq'H dq / 2`` with ``lower <= q + dq <= upper``.

    Projected Newton: the Newton step is scaled into the trust region ``|dq|_inf <= max_step``; if it leaves the
    box, joints already at the bound it crosses are held (a large diagonal penalty, i.e. the Newton step of the
    remaining joints) and the result is projected onto the box. ``H`` must be symmetric positive definite.
    """
    dq = _spd_solve(H, -g)
    size = np.abs(dq).max()
    if size > max_step:
        dq *= max_step / size
        size = max_step
    q_new = q + dq
    below, above = q_new < lower, q_new > upper
    if below.any() or above.any():
        hold = ((q <= lower + 1e-9) & (g > 0.0)) | ((q >= upper - 1e-9) & (g < 0.0))
        if hold.any():
            H = H.copy()
            H.flat[:: len(q) + 1] += 1e12 * hold
            dq = _spd_solve(H, -g)
            size = np.abs(dq).max()
            if size > max_step:
                dq *= max_step / size
        dq = np.minimum(np.maximum(q + dq, lower), upper) - q
        size = np.abs(dq).max()
    return dq, float(size)


def _spd_solve(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, x, info = lapack.dposv(H, b)
    if info != 0:  # not positive definite (only with zero damping and a rank-deficient problem)
        return np.linalg.lstsq(H, b, rcond=None)[0]
    return x


def _check_same_hand(config: HandRetargetConfig, description: RobotDescription) -> None:
    """A config is made for one hand: refuse it on a robot whose hand description differs (a right-hand config
    on a left hand has the same link names and would retarget mirrored without any error)."""
    if config.robot_profile == description.profile.name:
        return
    try:
        made_for = load_profile(config.robot_profile)
    except ProfileError as exc:
        raise ValueError(f"{config.source or config.name}: robot_profile '{config.robot_profile}': {exc}") from None
    if made_for.hand_description_path() != description.profile.hand_description_path():
        raise ValueError(f"{config.source or config.name} is made for the hand of robot profile "
                         f"'{config.robot_profile}' ({made_for.hand.description}), but robot "
                         f"'{description.profile.name}' has {description.profile.hand.description}: use that "
                         "hand's retargeting config")


class HandRetargeter:
    """Retarget 21 human keypoints to the robot hand with the method of ``config``.

    Stateful (warm start, low-pass filter, DexPilot pinch hysteresis): one instance per hand stream; not
    thread-safe. ``retarget`` raises :class:`~dexstack.retarget.keypoints.KeypointError` (a ``ValueError``) on
    bad input and then keeps its previous solution.
    """

    def __init__(self, config: HandRetargetConfig, description: RobotDescription | None = None):
        self.config = config
        self.description = description if description is not None else load_description(config.robot_profile)
        _check_same_hand(config, self.description)
        self.hand = HandModel(self.description, [config.human_frame])
        config.check_links(self.hand.link_names, self.hand.is_rigid_to_root(config.human_frame.name))
        # T_root_H: pose of the human hand frame's robot analogue in the hand root frame (constant: rigid)
        self.T_root_H = self.hand.link_pose(np.zeros(self.hand.n), config.human_frame.name)
        self._R_T = self.T_root_H[:3, :3].T  # row-vector form: v_root = v_H @ R_T
        self._R_scaled_T = config.scaling * self._R_T
        self._build_terms()
        self.info = SolveInfo()
        self.reset()
        log.debug("%s: %d terms over %d moving frames, %d joints", config.name, self.n_terms,
                  len(self._frame_ids), self.hand.n)

    # ----------------------------------------------------------------------------------------------- setup
    @classmethod
    def from_file(cls, name_or_path: str, method: str | None = None,
                  description: RobotDescription | None = None) -> HandRetargeter:
        """``HandRetargeter.from_file("allegro_right", "dexpilot")``: load ``config/retarget/<name>.yaml``;
        ``""`` with a description: the shipped config made for its profile (:func:`retarget_config_for`)."""
        if not name_or_path:
            if description is None:
                raise ValueError("no retargeting config given and no robot description to pick one for")
            name_or_path = retarget_config_for(description.profile.name)
        return cls(load_retarget_config(name_or_path, method), description)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.hand.joint_names

    def _build_terms(self) -> None:
        """Compile the method into matrices: term k = frame a_k minus frame b_k vs human i_k minus j_k."""
        cfg = self.config
        if cfg.method == "vector":
            rows = [(t.task_link, t.origin_link, t.human_task, t.human_origin, t.weight, False) for t in cfg.vectors]
        elif cfg.method == "position":
            rows = [(t.link, None, t.human, 0, t.weight, True) for t in cfg.points]
        else:
            dp = cfg.dexpilot
            assert dp is not None
            tips, human = dp.fingertip_links, dp.fingertip_human
            pairs = [(i, j) for i in range(len(tips)) for j in range(i + 1, len(tips))]
            # pair (i, j): vector from tip j to tip i (i = 0 is the thumb); then wrist -> every tip
            rows = [(tips[i], tips[j], human[i], human[j], 1.0, False) for i, j in pairs]
            rows += [(tip, dp.wrist_link, h, dp.wrist_human, dp.weight_wrist, False)
                     for tip, h in zip(tips, human, strict=True)]
            self._n_pairs = len(pairs)
            self._thumb_pairs = [k for k, (i, _) in enumerate(pairs) if i == 0]
            thumb_pair_of = {j: k for k, (i, j) in enumerate(pairs) if i == 0}
            # finger-finger pair k = (i, j): (k, pair (thumb, i), pair (thumb, j))
            self._finger_pairs = [(k, thumb_pair_of[i], thumb_pair_of[j]) for k, (i, j) in enumerate(pairs) if i]
            is_thumb = np.array([i == 0 for i, _ in pairs])
            self._pinch_weight = np.where(is_thumb, dp.weight_thumb_pinch, dp.weight_finger_pinch)
            self._eta = np.where(is_thumb, dp.eta_thumb_m, dp.eta_finger_m)
        # Frames rigid to the root (e.g. the wrist frame) have constant positions and zero Jacobians: they are
        # folded into the targets once, so each iteration only evaluates the moving frames.
        moving: list[str] = []
        for link in [r[0] for r in rows] + [r[1] for r in rows if r[1] is not None]:
            if link not in moving and not self.hand.is_rigid_to_root(link):
                moving.append(link)
        for r in rows:
            if r[0] not in moving:
                raise ValueError(f"{cfg.source or cfg.name}: the task link '{r[0]}' of a term does not move with "
                                 "the hand joints, so it cannot be retargeted")
        self._frame_ids = [self.hand.frame_id(link) for link in moving]
        K, F = len(rows), len(moving)
        # r = A P - t with A (K, F) holding +1 (task frame) and -1 (moving origin frame)
        A = np.zeros((K, F))
        offset = np.zeros((K, 3))  # constant part of each target (root frame)
        human = np.zeros((K, 21))  # human vector of term k = human[k] @ keypoints
        zero_q = np.zeros(self.hand.n)
        for k, (task, origin, hi, hj, _, is_point) in enumerate(rows):
            A[k, moving.index(task)] += 1.0
            if origin in moving:
                A[k, moving.index(origin)] -= 1.0
            elif origin is not None:  # rigid origin: its (constant) position joins the target
                offset[k] = self.hand.link_positions(zero_q, [origin])[0]
            if is_point:  # position term: H's origin in the root frame
                offset[k] = self.T_root_H[:3, 3]
            human[k, hi] += 1.0
            human[k, hj] -= 1.0
        # when every term is one moving frame minus a constant, in frame order: no mixing needed
        self._A = None if np.array_equal(A, np.eye(K, F)) and K == F else A
        self._human = human
        self._offset = offset
        self._weights = np.array([r[4] for r in rows], dtype=float)
        self._c = self._weights / K
        self._diag = (2.0 * cfg.reg_weight + cfg.solver.damping) * np.eye(self.hand.n)
        self.n_terms = K

    def reset(self, q_rad: np.ndarray | None = None) -> None:
        """Forget the past: warm start (and filter state) from ``q_rad`` (description order, default the profile's
        home), DexPilot pinches released."""
        q = self.description.home(self.hand.joint_names) if q_rad is None else np.asarray(q_rad, dtype=float)
        if q.shape != (self.hand.n,) or not np.isfinite(q).all():
            raise ValueError(f"reset: expected {self.hand.n} finite joint positions, got {q!r}")
        q = np.clip(q, self.hand.lower_rad, self.hand.upper_rad)
        self._q_pin = self.hand.to_pin(q)  # last solution (unfiltered), pinocchio order
        self._q_out = q.copy()  # last output (filtered), description order
        if self.config.method == "dexpilot":
            self._pinched = [False] * self._n_pairs
            self.info.pinched = tuple(self._pinched)

    @property
    def last_solution(self) -> np.ndarray:
        """The last (filtered) output, description order (rad)."""
        return self._q_out.copy()

    # ----------------------------------------------------------------------------------------------- solve
    def targets(self, keypoints_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets ``t_k`` (K, 3) in the hand root frame and weights ``c_k`` for keypoints in ``H``.

        Updates the DexPilot pinch state (hysteresis) as a side effect.
        """
        human = self._human @ keypoints_m  # (K, 3) human vectors in H
        t = human @ self._R_scaled_T + self._offset
        if self.config.method != "dexpilot":
            return t, self._c
        dp, n, pinched = self.config.dexpilot, self._n_pairs, self._pinched
        dist = np.sqrt(np.einsum("ij,ij->i", human[:n], human[:n])).tolist()  # human fingertip distances (m)
        for k in self._thumb_pairs:  # hysteresis: pinch below project_dist, let go above escape_dist
            if dist[k] < dp.project_dist_m:
                pinched[k] = True
            elif dist[k] > dp.escape_dist_m:
                pinched[k] = False
        for k, thumb_i, thumb_j in self._finger_pairs:
            pinched[k] = pinched[thumb_i] and pinched[thumb_j] and dist[k] <= dp.project_dist_m
        if not any(pinched):
            return t, self._c
        k = np.flatnonzero(pinched)
        direction = human[k] / np.maximum(np.asarray(dist)[k], 1e-9)[:, None]
        t[k] = (self._eta[k, None] * direction) @ self._R_T
        c = self._c.copy()
        c[k] = self._pinch_weight[k] / self.n_terms
        return t, c

    def retarget(self, keypoints_m: np.ndarray) -> np.ndarray:
        """Joint targets (rad, ``description.hand_joints`` order) for keypoints (21, 3) in ``H`` (m)."""
        kp = check_keypoints(keypoints_m)
        t, c = self.targets(kp)
        q = self._solve(t, c, self._q_pin)
        self._q_pin = q
        q_desc = q[self.hand.pin_index]
        alpha = self.config.low_pass_alpha
        self._q_out = q_desc if alpha >= 1.0 else alpha * q_desc + (1.0 - alpha) * self._q_out
        if self.config.method == "dexpilot":
            self.info.pinched = tuple(self._pinched)
        return self._q_out.copy()

    def _residuals(self, P: np.ndarray, J: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r_k (K, 3) and dr_k/dq (K, 3, n) from the moving frames' positions P (F, 3) and Jacobians J (F, 3, n)."""
        if self._A is None:
            return P - t, J
        F, _, n = J.shape
        return self._A @ P - t, (self._A @ J.reshape(F, -1)).reshape(-1, 3, n)

    def _energy(self, d: np.ndarray, c: np.ndarray, dq_prev: np.ndarray) -> float:
        """E = sum_k c_k SmoothL1_beta(d_k) + reg_weight |q - q_prev|^2, with SmoothL1 = m (d - m/2) / beta."""
        beta = self.config.huber_delta_m
        m = np.minimum(d, beta)
        return float(c @ (m * (d - 0.5 * m))) / beta + self.config.reg_weight * float(dq_prev @ dq_prev)

    def _solve(self, t: np.ndarray, c: np.ndarray, q_prev: np.ndarray) -> np.ndarray:
        """Minimise E from ``q_prev`` (pinocchio order); the targets ``t`` already include the rigid frames.

        Each iteration: one FK + Jacobian evaluation, IRLS weights, a projected (Levenberg-Marquardt damped)
        Gauss-Newton step. It stops when the step is below ``step_tol_rad``: the step is then applied without
        another evaluation (its second-order error is ~ link length * step^2 / 2; the next call continues from
        it). A step that increased E is halved; E is only evaluated when such a check is needed. Out of
        iterations, the last full step is kept (or, while backtracking, the best evaluated iterate).
        """
        solver, hand, frame_ids = self.config.solver, self.hand, self._frame_ids
        lower, upper, beta = hand.lower_pin, hand.upper_pin, self.config.huber_delta_m
        two_lam, diag, tol = 2.0 * self.config.reg_weight, self._diag, solver.step_tol_rad
        n = hand.n
        q = q_acc = q_prev
        d_acc, e_acc, step, halving = None, None, None, False
        info = self.info
        info.converged = False
        for it in range(solver.max_iterations):
            P, J = hand.points_and_jacobians(q, frame_ids)
            r, Jk = self._residuals(P, J, t)
            d = np.sqrt(np.einsum("ij,ij->i", r, r))
            info.iterations = it + 1
            if step is not None:  # accept the last step only if it lowered E
                if e_acc is None:
                    e_acc = self._energy(d_acc, c, q_acc - q_prev)
                e = self._energy(d, c, q - q_prev)
                if e > e_acc:
                    step, halving = 0.5 * step, True
                    if np.abs(step).max() < tol:
                        q = q_acc
                        break
                    q = q_acc + step
                    continue
                e_acc, halving = e, False
            q_acc, d_acc = q, d
            w = c / np.maximum(d, beta)  # IRLS weights of SmoothL1: dE/dr_k = c_k r_k / max(d_k, beta)
            Jw = (Jk * w[:, None, None]).reshape(-1, n)
            Jf = Jk.reshape(-1, n)
            H = Jf.T @ Jw
            H += diag
            g = Jw.T @ r.reshape(-1)
            if it and two_lam:  # (q == q_prev on the first iteration)
                g += two_lam * (q - q_prev)
            step, size = bounded_newton_step(H, g, q, lower, upper, solver.max_step_rad)
            q = q + step
            if size < tol:
                info.converged = True
                break
        else:
            if halving:  # out of iterations while backtracking: keep the best evaluated iterate
                q = q_acc
        info.residuals_m = d_acc
        return q
