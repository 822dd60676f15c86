"""Shared rclpy plumbing for dexstack nodes: typed parameters, QoS profiles, stamps, diagnostics, entry point."""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dexstack.diagnostics import StatusReport
from dexstack.processes import STACK_DUMP_SIGNAL

# Sensor streams: latest wins, never block the publisher.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)
# Commands and joint states: every message matters, small queue.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
STATE_QOS = COMMAND_QOS
# State a late joiner needs (robot description, calibration).
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

P = TypeVar("P")


def param(default: Any, description: str, *, read_only: bool = False, min: float | None = None,
          max: float | None = None, choices: tuple | None = None,
          validate: Callable[[Any], str | None] | None = None) -> Any:
    """A ROS parameter as a dataclass field. ``validate`` returns an error message, or None if the value is fine."""
    metadata = {"description": description, "read_only": read_only, "min": min, "max": max, "choices": choices,
                "validate": validate}
    if isinstance(default, list):  # array parameters: a fresh list per instance
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _descriptor(f: dataclasses.Field) -> ParameterDescriptor:
    m = f.metadata
    text = m["description"] + (f" One of {list(m['choices'])}." if m["choices"] else "")
    d = ParameterDescriptor(description=text, read_only=m["read_only"])
    if m["min"] is not None or m["max"] is not None:
        lo = m["min"] if m["min"] is not None else -sys.float_info.max
        hi = m["max"] if m["max"] is not None else sys.float_info.max
        default = _default(f)
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def check_value(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter field ``f`` (None if it is). ROS checks type and range."""
    m = f.metadata
    if m["choices"] and value not in m["choices"]:
        return f"{f.name}={value!r} is not one of {list(m['choices'])}"
    if m["validate"] is not None:
        return m["validate"](value)
    return None


def declare_params(node: Node, params_cls: type[P], on_change: Callable[[str, Any], None] | None = None,
                   validate_all: Callable[[P], str | None] | None = None) -> P:
    """Declare every field of ``params_cls`` on ``node`` with descriptors; return the current values.

    Later sets are validated (type and range by ROS, choices and ``validate`` here); a rejected set keeps the old
    value and answers the caller with the reason. ``validate_all`` checks the would-be values together (e.g. a
    min below a max). Accepted sets update the returned object and call ``on_change``.
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    # A value given for a parameter the node does not have (a typo in a params file or launch file) is refused,
    # like an unknown key in any other config: rclpy would silently ignore it and keep the default.
    overrides = getattr(node, "_parameter_overrides", None) or {}
    unknown = sorted(n for n in overrides if n not in fields and not node.has_parameter(n)
                     and not n.startswith("qos_overrides."))
    if unknown:
        raise ValueError(f"unknown parameter '{unknown[0]}' for node '{node.get_name()}': known parameters are "
                         f"{', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        node.declare_parameter(name, _default(f), _descriptor(f))
        values[name] = node.get_parameter(name).value
        error = check_value(f, values[name])
        if error:
            raise ValueError(f"invalid startup parameter: {error}")
    current = params_cls(**values)
    if validate_all is not None and (error := validate_all(current)):
        raise ValueError(f"invalid startup parameters: {error}")

    def on_set(parameters: list) -> SetParametersResult:
        for p in parameters:
            if p.name in fields:
                error = check_value(fields[p.name], p.value)
                if error:
                    node.get_logger().warning(f"rejected parameter change: {error}")
                    return SetParametersResult(successful=False, reason=error)
        if validate_all is not None:
            candidate = dataclasses.replace(current, **{p.name: p.value for p in parameters if p.name in fields})
            error = validate_all(candidate)
            if error:
                node.get_logger().warning(f"rejected parameter change: {error}")
                return SetParametersResult(successful=False, reason=error)
        for p in parameters:
            if p.name in fields:
                setattr(current, p.name, p.value)
                if on_change is not None:
                    on_change(p.name, p.value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return current


def live_rate_timer(node: Node, rate_param: str, rate_hz: float, callback: Callable[[], None]):
    """A timer at ``rate_hz`` that follows later (accepted) sets of parameter ``rate_param`` (Hz): a writable rate
    parameter changes the running timer, it is not only read at start."""
    timer = node.create_timer(1.0 / rate_hz, callback)

    def on_set(parameters: list) -> None:
        for p in parameters:
            if p.name == rate_param and p.value > 0:
                timer.timer_period_ns = int(1e9 / p.value)

    node.add_post_set_parameters_callback(on_set)
    return timer


def stamp_from_ns(stamp_ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def points_from_pose_array(msg) -> np.ndarray:
    """(N, 3) positions (m) of a geometry_msgs/PoseArray (keypoints are sent as poses without orientation)."""
    return np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses], dtype=float).reshape(-1, 3)


def diagnostic_array(node: Node, reports: list[StatusReport]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    for r in reports:
        msg.status.append(DiagnosticStatus(
            level=bytes([int(r.level)]), name=r.name, message=r.message, hardware_id=node.get_name(),
            values=[KeyValue(key=k, value=str(v)) for k, v in r.values.items()],
        ))
    return msg


class RateMeter:
    """Events per second over a sliding window (for diagnostics and reports)."""

    def __init__(self, window_s: float = 2.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        self._times.append(now_s)
        cutoff = now_s - self.window_s
        while self._times and self._times[0] < cutoff:
            self._times.popleft()

    def rate_hz(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def _stop_via_rclpy(signum: int, frame) -> None:
    """SIGINT: nothing to do here; rclpy's handler (which ran first) shuts the context down."""


EXECUTOR_ENV = "DEXSTACK_EXECUTOR"
# the simulated cell's object pose (geometry_msgs/PoseStamped, base frame): ground truth, for evaluation and for
# the sim-only inputs that stand in for what a camera would see (sim_cell publishes it for a listener)
SIM_OBJECT_GT_TOPIC = "dexstack/sim/object_pose_gt"
EXECUTORS = ("events", "single")


def make_executor(context=None):
    """The executor every node spins on: ``$DEXSTACK_EXECUTOR``, ``events`` (default) or ``single``.

    ``events`` is rclpy's C++ EventsExecutor (``rclpy.experimental``): callbacks are dispatched from events, not by
    rebuilding a wait set of every entity on each wake as rclpy's SingleThreadedExecutor does in Python. In the
    deployed graph that rebuild was a fifth of the safety monitor's CPU and a quarter of the policy's
    (``bench/node_cpu.py``, docs/benchmarks.md); ``single`` is rclpy's SingleThreadedExecutor, kept to compare."""
    choice = os.environ.get(EXECUTOR_ENV, "events")
    if choice not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={choice!r} is not one of {list(EXECUTORS)}")
    if choice == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor(context=context)


def run_node(node_factory: Callable[[], Node], args: list[str] | None = None) -> None:
    """Entry point body: init, spin until Ctrl-C / SIGTERM. A bad setup (missing file, invalid parameter) exits
    with its message and code 2, not a traceback; errors while running are bugs and keep their traceback."""
    # rclpy's own SIGINT handler shuts the context down (spin then ends with ExternalShutdownException) and chains to
    # Python's handler. Python's default raises KeyboardInterrupt wherever the interpreter happens to be, e.g. inside
    # a message conversion in take_message, which pybind11 turns into "RuntimeError: Unable to convert call
    # argument '0'" and the node exits 1 on a plain Ctrl-C. A handler that does not raise leaves the stop to rclpy.
    signal.signal(signal.SIGINT, _stop_via_rclpy)
    # A node that does not stop when asked is a bug to find: the launcher sends this signal before it kills one, and
    # every thread's Python stack goes to the node's log (stderr).
    faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True, chain=False)
    rclpy.init(args=args)
    node = None
    try:
        executor = make_executor()
    except ValueError as exc:
        print(f"[dexstack] cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        try:
            node = node_factory()
        except (ValueError, FileNotFoundError) as exc:
            print(f"[dexstack] cannot start: {exc}", file=sys.stderr)
            sys.exit(2)
        except (KeyboardInterrupt, Exception):
            if rclpy.ok():
                raise
            return  # stopped by a signal while starting up
        try:
            executor.add_node(node)
            # A bounded wait, not rclpy.spin's unbounded spin_once(): the EventsExecutor's unbounded wait neither runs
            # the node's callbacks nor returns on Ctrl-C (seen here); the timeout only bounds how long a stop waits.
            while executor.context.ok():
                executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
            pass
        except Exception:
            # SIGINT/SIGTERM shut the context down while the executor was mid-take: a clean stop, not a crash.
            if rclpy.ok(context=node.context):
                raise
    finally:
        # the executor first: the EventsExecutor's C++ threads outliving their context crash the process at exit
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


class BackgroundSpin:
    """Spin nodes in a background thread (tools and probes that also run their own logic on the main thread).

    ``close()`` stops the thread and joins it *before* anything is destroyed: a daemon thread still inside rclpy's C++
    wait when the interpreter exits ends the process with "terminate called without an active exception" (SIGABRT),
    whatever exit code the tool meant to return. The loop uses ``spin_once`` with a short timeout so the stop flag is
    seen promptly even when no message arrives."""

    def __init__(self, *nodes: Node, poll_s: float = 0.05, name: str = "spin") -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.nodes = nodes
        self.executor = SingleThreadedExecutor(context=nodes[0].context if nodes else None)
        for node in nodes:
            self.executor.add_node(node)
        self._poll_s = poll_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # rclpy's own spin loop ends on Executor.shutdown() too: a shut-down executor's spin_once returns at once, so a
        # loop that missed the shutdown would spin the CPU (and hold the GIL) until the process exits.
        while not self._stop.is_set() and self.executor.context.ok() and not self.executor._is_shutdown:
            try:
                self.executor.spin_once(timeout_sec=self._poll_s)
            except (rclpy.executors.ExternalShutdownException, rclpy.executors.ShutdownException):
                return
            except Exception:
                if self.executor.context.ok() and not self._stop.is_set():
                    raise
                return  # the context was shut down mid-take (Ctrl-C): a stop, not a crash

    def close(self, *, destroy_nodes: bool = True, shutdown_rclpy: bool = True, timeout_s: float = 10.0) -> None:
        """Stop and join the thread, then (optionally) destroy the nodes and shut rclpy's context down."""
        self._stop.set()
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():  # a callback that never returns: say so instead of aborting at exit
            print(f"[dexstack] {self.thread.name} thread did not stop within {timeout_s} s", file=sys.stderr)
        self.executor.shutdown(timeout_sec=1.0)
        if destroy_nodes:
            for node in self.nodes:
                node.destroy_node()
        if shutdown_rclpy and self.executor.context.ok():
            self.executor.context.try_shutdown()


def name_native_thread(name: str) -> None:
    """Give the calling thread's OS thread the name ``name`` (first 15 bytes), so ``top -H``, /proc/<pid>/task and
    ``bench/node_cpu.py`` tell a node's threads apart (Python 3.11 leaves every thread named after the interpreter)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):  # not Linux: the name is only a convenience
        pass


def control_time_s(node: Node) -> float:
    """Time for control loops, timeouts and the safety gate (seconds): ``time.monotonic()``, or the node's ROS clock
    (the simulation's /clock) when the node runs with ``use_sim_time`` (rclpy's built-in parameter), so a slow
    simulation slows the whole graph instead of desynchronising it."""
    clock = node.get_clock()
    if clock.ros_time_is_active:
        return clock.now().nanoseconds * 1e-9
    return time.monotonic()


def call_service(node: Node, srv_type, name: str, request, timeout_s: float = 10.0, attempts: int = 3):
    """Call a service from a node spun by another thread; None if it never answered. Retries: with Fast DDS a
    response can be lost while a new client's reply reader is still matching (use for idempotent calls only)."""
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        for _ in range(attempts):
            future = client.call_async(request)
            deadline = time.monotonic() + timeout_s / attempts
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        return None
    finally:
        node.destroy_client(client)
