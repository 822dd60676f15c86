"""The executor every node spins on (dexstack.nodes.common.make_executor): chosen by $DEXSTACK_EXECUTOR, and each
choice runs timers and subscriptions with the bounded spin_once loop run_node uses."""

from __future__ import annotations

import time

import pytest

from dexstack.nodes import common


def test_unknown_executor_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(common.EXECUTOR_ENV, "multi")
    with pytest.raises(ValueError, match="events"):
        common.make_executor()


@pytest.mark.parametrize("choice", common.EXECUTORS)
def test_each_executor_runs_timers_and_subscriptions(rclpy_context, monkeypatch, choice):
    import rclpy
    from std_msgs.msg import Int32

    monkeypatch.setenv(common.EXECUTOR_ENV, choice)
    executor = common.make_executor()
    if choice == "single":
        assert isinstance(executor, rclpy.executors.SingleThreadedExecutor)
    node = rclpy.create_node(f"executor_test_{choice}")
    got: list[int] = []
    ticks = [0]
    pub = node.create_publisher(Int32, f"executor_test_{choice}", common.COMMAND_QOS)

    def on_timer() -> None:
        ticks[0] += 1
        pub.publish(Int32(data=ticks[0]))

    node.create_timer(0.01, on_timer)
    node.create_subscription(Int32, f"executor_test_{choice}", lambda msg: got.append(msg.data), common.COMMAND_QOS)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 10.0
        while (ticks[0] < 10 or len(got) < 10) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:  # shut down: an EventsExecutor left to the interpreter's exit segfaults the test process (rc 139)
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    assert ticks[0] >= 10
    assert got[:5] == [1, 2, 3, 4, 5]  # in order, none lost
