import numpy as np

from dexstack.control.joint_state import JointStateCache


def test_state_is_assembled_from_partial_messages_in_any_order():
    cache = JointStateCache(["a1", "a2", "h1"])
    cache.update(["h1"], [0.5], now_s=0.0)
    assert cache.positions(0.0, 0.1) is None  # arm not seen yet
    assert cache.missing(0.0, 0.1) == ["a1", "a2"]
    cache.update(["a2", "a1", "other_robot_joint"], [2.0, 1.0, 9.0], now_s=0.05)
    np.testing.assert_array_equal(cache.positions(0.05, 0.1), [1.0, 2.0, 0.5])


def test_state_goes_stale_when_one_part_stops():
    cache = JointStateCache(["a1", "h1"])
    cache.update(["a1", "h1"], [1.0, 2.0], now_s=0.0)
    cache.update(["a1"], [1.1], now_s=0.4)
    assert cache.positions(0.4, 0.5) is not None
    assert cache.positions(0.6, 0.5) is None and cache.missing(0.6, 0.5) == ["h1"]
