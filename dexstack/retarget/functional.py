"""Functional grasp retargeting (FunGrasp): a human grasp in the object frame -> a robot grasp target.

Input: 21 MANO keypoints of a human hand holding the object, in the object frame (m), and the object's model
(:class:`~dexstack.perception.objects.ObjectModel`, whose signed distance ``d(p)`` is negative inside). Human
contacts are the finger keypoints whose skin is within ``contact_gap_m`` of the surface
(``d(kp) - r_human <= gap``), plus the palm. Each has a robot counterpart: the link the retargeting config maps
the keypoint to (``keypoint_links``; the pinky's contacts go to the ring finger, the Allegro having no pinky).

Unknowns: the palm pose in the object frame ``T_O_P = (R, t)`` and the hand joints ``q``. With ``p_i(q)`` a
robot point in the palm frame (pinocchio FK of the hand model) and ``P_i = R p_i + t`` in the object frame, the
solver minimises the sum of squares of::

    contacts     w_k (P_k - c_k - r_k n_k)             c_k: the human contact projected on the surface, n_k its
                                                         normal, r_k the robot link's half-thickness (touching)
                                                         w: fingertips 4, thumb tip 6, other links 1 (FunGrasp)
    pads         w_k f (Q_k - c_k)                      fingertip contacts: Q_k one tip radius out of the tip
                                                         along its pad (``pad_axis``, where flexion moves it), so
                                                         the pad faces the surface and closing presses into it
    hand shape   w_s (P_j - kp_j)                       the other mapped keypoints, weakly
    penetration  w_pen max(0, r_i - d(P_i))             collision samples of the fingers, tips and palm
    table        w_pen max(0, z_table + c + r_i - P_i,z) when the object rests on a table (object frame z up)
    fingers      w_pen max(0, r_a + r_b - |P_a - P_b|)  fingertips of different fingers (self-collision)
    posture      w_q (q - q_0)                          q_0: vector retargeting of the human hand

by Levenberg-Marquardt over ``(dt, dw, dq)`` with ``t <- t + dt``, ``R <- exp(dw) R`` (so
``dP/dt = I``, ``dP/dw = -[P - t]x``, ``dP/dq = R J_i(q)``), the joint limits held by the projected Newton step of
:func:`~dexstack.retarget.hand.bounded_newton_step`. Initial guess: the palm placed where the human wrist puts the
config's ``human_frame``, and ``q_0``.

The pre-grasp is the same hand opened (joints moved up to ``pregrasp_open_fraction`` of the way to zero, less if
the opened hand would enter the object or the table at the grasp pose; the thumb's rotation kept) and backed off
``pregrasp_backoff_m`` against the palm normal. The squeeze pose is the target hand with every finger contact
``squeeze_depth_m`` inside the surface (palm fixed): what a position-controlled hand may be told to press with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dexstack.perception.objects import ObjectModel
from dexstack.retarget.config import HandRetargetConfig, load_retarget_config
from dexstack.retarget.hand import HandRetargeter, bounded_newton_step
from dexstack.retarget.hand_model import FrameSpec, HandModel
from dexstack.retarget.keypoints import FINGERS, check_keypoints, hand_frame_from_keypoints, to_hand_frame
from dexstack.robot.description import RobotDescription, load_description
from dexstack.transforms import invert_transform, skew, so3_exp

# Half-thickness of a human hand's skin around each MANO keypoint (m): finger radii of an adult hand, the same
# as the rendered hand's (dexstack/sim/human_hand.py; dexstack.grasp.human_grasps.keypoint_radii_m checks it).
HUMAN_KEYPOINT_RADIUS_M: tuple[float, ...] = (
    0.018, 0.0125, 0.0125, 0.0105, 0.0095, 0.0095, 0.0085, 0.0078, 0.0078, 0.0098, 0.0088, 0.008, 0.008,
    0.0092, 0.0083, 0.0076, 0.0076, 0.0082, 0.0075, 0.0068, 0.0068)
HUMAN_PALM_HALF_THICKNESS_M = 0.015


class GraspRetargetError(ValueError):
    """A human grasp that cannot be retargeted (not touching the object, no solution); the message says why."""


@dataclass(frozen=True)
class FunctionalRetargetConfig:
    retarget: str = "allegro_right"  # config/retarget/<name>.yaml: human frame on the robot, keypoint -> link map
    contact_gap_m: float = 0.008  # a human keypoint is a contact when its skin is this close to the surface
    match_tol_m: float = 0.006  # a robot link matches a contact when |d - r| is within this
    tip_weight: float = 4.0
    thumb_tip_weight: float = 6.0
    contact_weight: float = 1.0
    shape_weight: float = 0.1
    penetration_weight: float = 30.0
    posture_weight: float = 0.02
    # A fingertip contact is made with the pad, the side the finger's flexion moves toward (+x of the Allegro tip
    # frames): a point one tip radius out along it is pulled onto the contact, with this fraction of the tip's
    # weight. Without it the solver touched with the tip's end or back (the positions match either way) and the
    # closing hand curled away from the object instead of pressing (measured on the train objects).
    pad_weight_fraction: float = 1.0
    pad_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    max_iterations: int = 100
    table_clearance_m: float = 0.025  # robot links keep this far above the table (the close squeezes further)
    max_penetration_m: float = 0.004  # a solution deeper than this into the object is refused
    pregrasp_backoff_m: float = 0.08
    pregrasp_open_fraction: float = 0.7
    squeeze_depth_m: float = 0.015  # how far inside the surface the squeeze pose puts the finger contacts
    # Robot link half-thicknesses (m) for contact and collision: Allegro fingertips are 12 mm spheres, its
    # phalanges 19.6 mm thick boxes, its palm box face 11 mm in front of palm_link.
    tip_radius_m: float = 0.012
    link_radius_m: float = 0.0098
    finger_links: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "index": ("link_1.0", "link_2.0", "link_3.0", "link_3.0_tip"),
        "middle": ("link_5.0", "link_6.0", "link_7.0", "link_7.0_tip"),
        "ring": ("link_9.0", "link_10.0", "link_11.0", "link_11.0_tip"),
        "thumb": ("link_13.0", "link_14.0", "link_15.0", "link_15.0_tip")})
    thumb_rotation_joint: str = "joint_12.0"
    palm_contact_xyz_m: tuple[float, float, float] = (0.0111, 0.0, -0.045)  # palm face centre, palm_link frame
    palm_samples_yz_m: tuple[tuple[float, float], ...] = (
        (-0.035, -0.02), (0.0, -0.02), (0.035, -0.02), (-0.035, -0.06), (0.0, -0.06), (0.035, -0.06))
    palm_sample_x_m: float = -0.004
    palm_sample_radius_m: float = 0.015
    # The arm behind the hand keeps off the table too: points on the palm_link's -z axis (the flange at 95 mm, the
    # Panda's wrist joint 107 mm further), whose centres stay arm_min_height_m above the table: the safety gate's
    # 55 mm arm capsules may dip 15 mm into it, plus 5 mm. Without them the solver turned top pinches up to 106
    # deg from the human's hand, fingers pointing up and the wrist on the table (10 of 34 bench trials refused
    # by the arm plan, docs/grasp.md). None: the hand alone (no arm).
    arm_samples_z_m: tuple[float, ...] | None = (-0.095, -0.15, -0.202)
    arm_min_height_m: float = 0.045

    def __post_init__(self) -> None:
        for name in ("contact_gap_m", "match_tol_m", "tip_radius_m", "link_radius_m", "pregrasp_backoff_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.pregrasp_open_fraction <= 1.0:
            raise ValueError("pregrasp_open_fraction must be in [0, 1]")
        if self.max_iterations < 1:
            raise ValueError("max_iterations must be >= 1")


@dataclass(frozen=True)
class GraspTarget:
    """A robot grasp of one object: what a grasp controller (or the open-loop baseline) is given."""

    object_name: str
    T_object_palm: np.ndarray  # 4x4, the hand root link (palm_link) in the object frame
    q_hand_rad: np.ndarray  # description.hand_joints order
    link_names: tuple[str, ...]  # the robot links the target constrains
    link_positions_object_m: np.ndarray  # (L, 3) at the target, object frame
    contact_mask: np.ndarray  # (L,) bool: links that should touch the object
    T_object_palm_pregrasp: np.ndarray
    q_pregrasp_rad: np.ndarray
    q_squeeze_rad: np.ndarray  # the joints that press: contacts squeeze_depth_m inside the surface (palm fixed)
    human_contact_fingers: tuple[str, ...]
    robot_contact_fingers: tuple[str, ...]  # robot counterparts that reach their contacts (within match_tol_m)
    contact_match: float  # fraction of human contact fingers whose robot counterpart matches
    max_penetration_m: float
    retarget_ms: float
    iterations: int

    def T_base_palm(self, T_base_object: np.ndarray, pregrasp: bool = False) -> np.ndarray:
        return np.asarray(T_base_object) @ (self.T_object_palm_pregrasp if pregrasp else self.T_object_palm)


# Human finger -> the robot finger that plays it (the Allegro has no pinky: the ring finger takes its contacts).
ROBOT_FINGER = {"thumb": "thumb", "index": "index", "middle": "middle", "ring": "ring", "pinky": "ring"}
_FINGER_OF_KEYPOINT = {k: f for f, idx in FINGERS.items() for k in idx}


class FunctionalRetargeter:
    """Human grasp keypoints in the object frame -> :class:`GraspTarget` (see the module doc). Not thread-safe."""

    def __init__(self, config: FunctionalRetargetConfig | None = None, description: RobotDescription | None = None):
        self.config = cfg = config or FunctionalRetargetConfig()
        self.hand_config: HandRetargetConfig = load_retarget_config(cfg.retarget, "vector")
        self.description = description or load_description(self.hand_config.robot_profile)
        self._vector = HandRetargeter(self.hand_config, self.description)
        self.T_palm_H = self._vector.T_root_H
        palm = self.description.profile.hand.palm_link
        # Extra frames: collision samples along every finger link, the palm contact point and palm samples.
        frames, self._col_radius, self._col_finger = [], [], []
        bare = HandModel(self.description)
        for finger, links in cfg.finger_links.items():
            for link, child in zip(links[:-1], links[1:]):
                T_link_child = np.linalg.solve(bare.link_pose(np.zeros(bare.n), link),
                                               bare.link_pose(np.zeros(bare.n), child))
                for z in (0.25, 0.5, 0.75):  # samples along the phalanx, from this joint to the next
                    xyz = tuple(float(v) for v in z * T_link_child[:3, 3])
                    frames.append(FrameSpec(f"fg_col_{len(frames)}", link, xyz, np.eye(3)))
                    self._col_radius.append(cfg.link_radius_m)
                    self._col_finger.append(finger)
        for y, z in cfg.palm_samples_yz_m:
            frames.append(FrameSpec(f"fg_col_{len(frames)}", palm, (cfg.palm_sample_x_m, y, z), np.eye(3)))
            self._col_radius.append(cfg.palm_sample_radius_m)
            self._col_finger.append("palm")
        frames.append(FrameSpec("fg_palm_contact", palm, cfg.palm_contact_xyz_m, np.eye(3)))
        pad = np.asarray(cfg.pad_axis, dtype=float)
        pad_xyz = tuple(float(v) for v in cfg.tip_radius_m * pad / np.linalg.norm(pad))
        pads = [FrameSpec(f"fg_pad_{links[-1]}", links[-1], pad_xyz, np.eye(3)) for links in cfg.finger_links.values()]
        arm = [FrameSpec(f"fg_arm_{k}", palm, (0.0, 0.0, z), np.eye(3))
               for k, z in enumerate(cfg.arm_samples_z_m or ())]
        self.hand = HandModel(self.description, [self.hand_config.human_frame, *frames, *pads, *arm])
        self._col_ids = [self.hand.frame_id(f.name) for f in frames[:-1]]
        self._col_radius = np.array(self._col_radius)
        self._arm_ids = [self.hand.frame_id(f.name) for f in arm]
        # The mapped links: robot analogue of each human keypoint (wrist and CMCs excluded from contacts).
        self.kp_links = {k: link for k, link in enumerate(self.hand_config.keypoint_links) if link is not None}
        self.link_names = tuple(dict.fromkeys(link for k, link in self.kp_links.items() if k != 0))
        self._link_ids = [self.hand.frame_id(link) for link in self.link_names]
        self._palm_contact_id = self.hand.frame_id("fg_palm_contact")
        self._tips = [cfg.finger_links[f][-1] for f in ("thumb", "index", "middle", "ring")]
        self._tip_ids = [self.hand.frame_id(t) for t in self._tips]

    # -------------------------------------------------------------------------------------------- geometry
    def _radius(self, link: str) -> float:
        return self.config.tip_radius_m if link.endswith("_tip") else self.config.link_radius_m

    def _robot_finger(self, link: str) -> str | None:
        return next((f for f, links in self.config.finger_links.items() if link in links), None)

    def human_contacts(self, model: ObjectModel, keypoints_object_m: np.ndarray
                       ) -> tuple[list[int], bool, tuple[str, ...]]:
        """(contact keypoint indices, palm touching, human fingers touching) of a human grasp."""
        kp = check_keypoints(keypoints_object_m)
        d, _ = model.signed_distance(kp)
        gap = d - np.asarray(HUMAN_KEYPOINT_RADIUS_M)
        contacts = [k for k in range(1, 21) if gap[k] <= self.config.contact_gap_m and k not in (1, 5, 9, 13, 17)]
        palm = kp[[0, 5, 9, 13, 17]].mean(0, keepdims=True)
        palm_touch = bool(model.signed_distance(palm)[0][0] - HUMAN_PALM_HALF_THICKNESS_M <= self.config.contact_gap_m)
        fingers = tuple(f for f in FINGERS if any(_FINGER_OF_KEYPOINT[k] == f for k in contacts))
        return contacts, palm_touch, fingers

    # -------------------------------------------------------------------------------------------- solve
    def retarget(self, model: ObjectModel, keypoints_object_m: np.ndarray, table_z_m: float | None = None,
                 side: str = "right", start_rotvec_palm_rad=None) -> GraspTarget:
        """The robot grasp target for a human grasp (keypoints (21, 3) in the object frame, metres).

        ``table_z_m``: height of the supporting table in the object frame (None: no table).
        ``start_rotvec_palm_rad``: turns the initial palm pose (the human wrist's) by this rotation vector about
        its own axes: the same objective from another start, which ends in another local optimum (the contact
        terms have many); :mod:`dexstack.grasp.verify` tries several. Raises :class:`GraspRetargetError` when the
        hand does not touch the object or no solution avoids penetration.
        """
        t0 = time.perf_counter()
        cfg = self.config
        kp = check_keypoints(keypoints_object_m)
        contacts, palm_touch, human_fingers = self.human_contacts(model, kp)
        if not contacts:
            d, _ = model.signed_distance(kp)
            raise GraspRetargetError(
                f"the hand is not touching '{model.name}': its nearest keypoint is {1000 * d.min():.0f} mm from the "
                f"surface (a contact is within {1000 * cfg.contact_gap_m:.0f} mm of the skin)")
        # Initial guess: the robot's human_frame where the human wrist is; joints by vector retargeting.
        T_O_H = hand_frame_from_keypoints(kp, side)
        T = T_O_H @ invert_transform(self.T_palm_H)
        if start_rotvec_palm_rad is not None:
            T[:3, :3] = T[:3, :3] @ so3_exp(np.asarray(start_rotvec_palm_rad, dtype=float))
        self._vector.reset()
        q0 = self._vector.retarget(to_hand_frame(kp, side))
        q = q0.copy()
        # Contact targets: the human contact projected on the surface, pushed out by the robot link's radius.
        d_kp, n_kp = model.signed_distance(kp)
        terms = []  # (frame id, target, weight)
        for k in contacts:
            finger = _FINGER_OF_KEYPOINT[k]
            idx = FINGERS[finger]
            k_robot = k if finger != "pinky" else FINGERS["ring"][idx.index(k)]
            link = self.kp_links.get(k_robot)
            if link is None:
                continue
            c = kp[k] - d_kp[k] * n_kp[k]
            w = cfg.contact_weight
            if k == idx[-1]:
                w = cfg.thumb_tip_weight if finger == "thumb" else cfg.tip_weight
            terms.append((self.hand.frame_id(link), c + self._radius(link) * n_kp[k], w, link))
            if link.endswith("_tip") and cfg.pad_weight_fraction > 0:
                terms.append((self.hand.frame_id(f"fg_pad_{link}"), c, w * cfg.pad_weight_fraction, f"pad:{link}"))
        if palm_touch:
            palm = kp[[0, 5, 9, 13, 17]].mean(0)
            dp, npalm = model.signed_distance(palm[None])
            terms.append((self._palm_contact_id, palm - dp[0] * npalm[0] + 0.002 * npalm[0], cfg.contact_weight,
                          "palm"))
        contact_links = {t[3] for t in terms}
        shape = [(self.hand.frame_id(link), kp[k], cfg.shape_weight) for k, link in self.kp_links.items()
                 if k != 0 and link not in contact_links]
        ids = [t[0] for t in terms] + [s[0] for s in shape] + self._col_ids + self._tip_ids + self._arm_ids
        n_arm = len(self._arm_ids)
        targets = np.array([t[1] for t in terms] + [s[1] for s in shape])
        weights = np.array([t[2] for t in terms] + [s[2] for s in shape])
        n_fit = len(targets)
        col_r = np.concatenate((self._col_radius, np.full(len(self._tip_ids), cfg.tip_radius_m)))
        lower = np.concatenate((np.full(6, -np.inf), self.hand.lower_pin))
        upper = np.concatenate((np.full(6, np.inf), self.hand.upper_pin))

        def evaluate(T, q_pin, with_jacobian):
            P_root, J_root = self.hand.points_and_jacobians(q_pin, ids)
            R, t = T[:3, :3], T[:3, 3]
            P = P_root @ R.T + t
            res, rows = [], []
            # fit terms (3 residuals each)
            e = (P[:n_fit] - targets) * weights[:, None]
            res.append(e.ravel())
            if with_jacobian:
                Jq = np.einsum("ij,fjk->fik", R, J_root)  # (F, 3, n)
                Jw = -np.array([skew(p - t) for p in P])  # (F, 3, 3)
                Jall = np.concatenate((np.broadcast_to(np.eye(3), (len(P), 3, 3)), Jw, Jq), axis=2)  # (F, 3, 6+n)
                rows.append((Jall[:n_fit] * weights[:, None, None]).reshape(-1, 6 + self.hand.n))
            # penetration of the collision samples (hinge)
            Pc = P[n_fit:len(P) - n_arm]
            d, grad = model.signed_distance(Pc)
            viol = col_r - d
            act = viol > 0
            res.append(cfg.penetration_weight * np.where(act, viol, 0.0))
            if with_jacobian:
                Jc = Jall[n_fit:len(P) - n_arm]
                rows.append(-cfg.penetration_weight * act[:, None] * np.einsum("fj,fjk->fk", grad, Jc))
            if table_z_m is not None:
                # hand samples clear the table by their radius + table_clearance_m, the arm's by arm_min_height_m
                floor = np.concatenate((table_z_m + cfg.table_clearance_m + col_r,
                                        np.full(n_arm, table_z_m + cfg.arm_min_height_m)))
                tv = floor - P[n_fit:, 2]
                ta = tv > 0
                res.append(cfg.penetration_weight * np.where(ta, tv, 0.0))
                if with_jacobian:
                    rows.append(-cfg.penetration_weight * ta[:, None] * Jall[n_fit:, 2, :])
            # fingertip self-collision
            n_tip = len(self._tip_ids)
            Pt = P[len(P) - n_arm - n_tip:len(P) - n_arm]
            for a in range(len(Pt)):
                for b in range(a + 1, len(Pt)):
                    v = Pt[a] - Pt[b]
                    dist = np.linalg.norm(v)
                    sv = 2 * cfg.tip_radius_m - dist
                    res.append(np.array([cfg.penetration_weight * max(sv, 0.0)]))
                    if with_jacobian:
                        ja, jb = Jall[len(P) - n_arm - n_tip + a], Jall[len(P) - n_arm - n_tip + b]
                        u = v / max(dist, 1e-9)
                        rows.append((-cfg.penetration_weight * (sv > 0) * (u @ (ja - jb)))[None])
            q_desc = self.hand.from_pin(q_pin)
            res.append(cfg.posture_weight * (q_desc - q0))
            if with_jacobian:
                Jp = np.zeros((self.hand.n, 6 + self.hand.n))
                Jp[np.arange(self.hand.n), 6 + self.hand.pin_index] = cfg.posture_weight
                rows.append(Jp)
            r = np.concatenate(res)
            return r, (np.vstack(rows) if with_jacobian else None)

        q_pin = self.hand.to_pin(q)
        lam = 1e-3
        r, J = evaluate(T, q_pin, True)
        cost = r @ r
        it = 0
        while it < cfg.max_iterations:
            it += 1
            H = J.T @ J
            H[np.diag_indices_from(H)] += lam * (1.0 + np.diag(H))
            x = np.concatenate((np.zeros(6), q_pin))
            dx, size = bounded_newton_step(H, J.T @ r, x, lower, upper, 0.3)
            T_new = T.copy()
            T_new[:3, 3] += dx[:3]
            T_new[:3, :3] = so3_exp(dx[3:6]) @ T[:3, :3]
            q_new = q_pin + dx[6:]
            r_new, _ = evaluate(T_new, q_new, False)
            if r_new @ r_new < cost:
                T, q_pin = T_new, q_new
                r, J = evaluate(T, q_pin, True)
                improvement = cost - r @ r
                cost = r @ r
                lam = max(lam / 3.0, 1e-7)
                if size < 1e-5 or improvement < 1e-10:
                    break
            else:
                lam *= 4.0
                if lam > 1e6:
                    break
        q = self.hand.from_pin(q_pin)
        q_squeeze = self._squeeze(model, T, q_pin, terms)
        return self._result(model, T, q, terms, human_fingers, palm_touch, table_z_m, t0, it, q_squeeze)

    def _squeeze(self, model: ObjectModel, T: np.ndarray, q_pin: np.ndarray, terms) -> np.ndarray:
        """Hand joints (palm fixed) that put every finger contact link ``squeeze_depth_m`` *inside* the surface
        at its contact: what a position-controlled hand is commanded to press with (DexGraspNet's squeeze pose).
        Gauss-Newton on the finger contact terms only, within the joint limits."""
        cfg = self.config
        finger_terms = [t for t in terms if t[3] != "palm" and not t[3].startswith("pad:")]
        if not finger_terms:
            return self.hand.from_pin(q_pin)
        ids = [t[0] for t in finger_terms]
        R, t = T[:3, :3], T[:3, 3]
        P0, _ = self.hand.points_and_jacobians(q_pin, ids)
        P0 = P0 @ R.T + t
        _, normals = model.signed_distance(P0)
        radii = np.array([self._radius(term[3]) for term in finger_terms])
        d0, _ = model.signed_distance(P0)
        goals = P0 - normals * (d0 - radii + cfg.squeeze_depth_m)[:, None]  # surface point, pushed in
        q = q_pin.copy()
        for _ in range(20):
            P, J = self.hand.points_and_jacobians(q, ids)
            r = (P @ R.T + t - goals).ravel()
            Jq = np.einsum("ij,fjk->fik", R, J).reshape(-1, self.hand.n)
            H = Jq.T @ Jq + 1e-4 * np.eye(self.hand.n)
            dq, size = bounded_newton_step(H, Jq.T @ r, q, self.hand.lower_pin, self.hand.upper_pin, 0.2)
            q = q + dq
            if size < 1e-4:
                break
        return self.hand.from_pin(q)

    def _result(self, model, T, q, terms, human_fingers, palm_touch, table_z_m, t0, iterations,
                q_squeeze) -> GraspTarget:
        cfg = self.config
        R, t = T[:3, :3], T[:3, 3]
        q_pin = self.hand.to_pin(q)
        P_links, _ = self.hand.points_and_jacobians(q_pin, self._link_ids)
        P_links = P_links @ R.T + t
        d_links, _ = model.signed_distance(P_links)
        radii = np.array([self._radius(link) for link in self.link_names])
        contact_links = {term[3] for term in terms}
        mask = np.array([link in contact_links for link in self.link_names])
        # Which robot fingers reach their contacts: a contact link within match_tol of touching the surface.
        matched = set()
        for link, d, r in zip(self.link_names, d_links, radii):
            if link in contact_links and abs(d - r) <= cfg.match_tol_m:
                matched.add(self._robot_finger(link))
        human = tuple(f for f in human_fingers)
        n_match = sum(ROBOT_FINGER[f] in matched for f in human)
        P_col, _ = self.hand.points_and_jacobians(q_pin, self._col_ids + self._tip_ids)
        P_col = P_col @ R.T + t
        col_r = np.concatenate((self._col_radius, np.full(len(self._tip_ids), cfg.tip_radius_m)))
        d_col, _ = model.signed_distance(P_col)
        penetration = float(max(0.0, (col_r - d_col).max()))
        if penetration > cfg.max_penetration_m:
            raise GraspRetargetError(
                f"no grasp of '{model.name}' without penetrating it: the best reaches {1000 * penetration:.1f} mm "
                f"inside (limit {1000 * cfg.max_penetration_m:.1f} mm)")
        # Pre-grasp: opened and backed off against the palm normal (palm_link +x faces the object).
        # The opened hand must fit at the grasp palm pose (it arrives there before closing): open it as far as
        # ``pregrasp_open_fraction`` allows without entering the object or the table, else less.
        keep = self.hand.joint_names.index(cfg.thumb_rotation_joint)  # the thumb stays opposed
        q_pre = q
        for fraction in np.linspace(cfg.pregrasp_open_fraction, 0.0, 6):
            q_try = q * (1.0 - fraction)
            q_try[keep] = q[keep]
            q_try = np.clip(q_try, self.hand.lower_rad, self.hand.upper_rad)
            P_try, _ = self.hand.points_and_jacobians(self.hand.to_pin(q_try), self._col_ids + self._tip_ids)
            P_try = P_try @ R.T + t
            d_try, _ = model.signed_distance(P_try)
            clear = (col_r - d_try).max() <= cfg.max_penetration_m
            if table_z_m is not None:
                clear = clear and (P_try[:, 2] - col_r).min() >= table_z_m + 0.005
            if clear:
                q_pre = q_try
                break
        T_pre = T.copy()
        T_pre[:3, 3] = t - cfg.pregrasp_backoff_m * R[:, 0]
        if table_z_m is not None and T_pre[2, 3] < T[2, 3]:
            T_pre[2, 3] = T[2, 3]  # never back off into the table
        return GraspTarget(
            object_name=model.name, T_object_palm=T, q_hand_rad=q, link_names=self.link_names,
            link_positions_object_m=P_links, contact_mask=mask, T_object_palm_pregrasp=T_pre, q_pregrasp_rad=q_pre,
            q_squeeze_rad=q_squeeze,
            human_contact_fingers=human, robot_contact_fingers=tuple(sorted(f for f in matched if f)),
            contact_match=n_match / max(len(human), 1), max_penetration_m=penetration,
            retarget_ms=1000.0 * (time.perf_counter() - t0), iterations=iterations)

