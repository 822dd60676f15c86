"""Rotation helpers (dexstack/transforms.py is their one home) and the policies' import graph without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pinocchio as pin
import pytest

from dexstack import transforms as tf


def _random_quats(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_quaternion_product_and_conjugate_match_rotation_matrices():
    a, b = _random_quats(5, 1), _random_quats(5, 2)
    ab = tf.quat_multiply(a, b)  # batched
    for qa, qb, qab in zip(a, b, ab):
        Ra, Rb = tf.quat_xyzw_to_matrix(qa), tf.quat_xyzw_to_matrix(qb)
        np.testing.assert_allclose(tf.quat_xyzw_to_matrix(qab), Ra @ Rb, atol=1e-12)
        np.testing.assert_allclose(tf.quat_xyzw_to_matrix(tf.quat_conjugate(qa)), Ra.T, atol=1e-12)
        angle = tf.quat_angle_rad(qa, qb)
        assert angle == pytest.approx(tf.rotation_angle_rad(Ra.T @ Rb), abs=1e-6)
    assert tf.quat_angle_rad(np.array([0, 0, 0, 1.0]), np.array([0, 0, np.sin(0.25), np.cos(0.25)])) == \
        pytest.approx(0.5)
    assert tf.quat_angle_rad(a[0], -a[0]) == pytest.approx(0.0, abs=1e-6)  # q and -q: the same rotation


def test_rotation_vector_skew_and_transforms():
    w = np.array([0.3, -1.1, 0.7])
    np.testing.assert_allclose(tf.so3_exp(w), pin.exp3(w), atol=1e-12)
    assert tf.rotation_angle_rad(tf.so3_exp(w)) == pytest.approx(np.linalg.norm(w))
    v = np.array([0.5, 2.0, -1.0])
    np.testing.assert_allclose(tf.skew(w) @ v, np.cross(w, v))
    T = tf.make_transform([0.1, -0.2, 0.3], tf.so3_exp(w))
    np.testing.assert_allclose(tf.invert_transform(T) @ T, np.eye(4), atol=1e-12)
    p = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    np.testing.assert_allclose(tf.transform_points(T, p), (T[:3, :3] @ p.T).T + T[:3, 3])


def _imports(path: Path) -> set[str]:
    """dexstack modules imported anywhere in a file (also inside functions: a lazy import is still a cycle)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dexstack"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("dexstack")}
    return out


def test_policies_modules_import_without_cycles():
    root = Path(tf.__file__).parent
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts): p
               for p in (root / "policies").rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    assert "dexstack.policies.action" not in graph["dexstack.policies.observation"]

    def visit(m, stack):
        assert m not in stack, f"import cycle: {' -> '.join([*stack, m])}"
        for n in graph[m]:
            visit(n, [*stack, m])

    for module in graph:
        if not module.endswith("__init__"):
            visit(module, [])
