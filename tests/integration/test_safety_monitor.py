"""Fault injection through real nodes: sim_cell + safety_monitor in their own processes, over real DDS."""

import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexstack.nodes import common
from dexstack.nodes.safety_link import REJECTED_TOPIC
from dexstack.robot import load_description
from dexstack.safety import SafetyConfig
from tests.ros_harness import call_service, wait_for

D = load_description("panda_allegro")
N_ARM = len(D.arm_joints)
CONFIG = SafetyConfig()  # config/safety.yaml uses the same values


class Recorder:
    def __init__(self):
        self.items = []  # (receive monotonic time, msg)

    def __call__(self, msg):
        self.items.append((time.monotonic(), msg))

    @property
    def last(self):
        return self.items[-1][1] if self.items else None


class Cell:
    """Test-side handles on the running graph."""

    def __init__(self, node):
        self.node = node
        self.states, self.arm_out, self.hand_out, self.diag = Recorder(), Recorder(), Recorder(), Recorder()
        node.create_subscription(JointState, "/joint_states", self.states, common.STATE_QOS)
        node.create_subscription(JointTrajectory, D.profile.arm.command.topic, self.arm_out, common.COMMAND_QOS)
        node.create_subscription(Float64MultiArray, D.profile.hand.command.topic, self.hand_out, common.COMMAND_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diag, 10)
        self.arm_in = node.create_publisher(JointTrajectory, "/dexstack/arm/command", common.COMMAND_QOS)
        self.hand_in = node.create_publisher(Float64MultiArray, "/dexstack/hand/command", common.COMMAND_QOS)
        self.estop_topic = node.create_publisher(Bool, "/dexstack/estop", common.COMMAND_QOS)
        assert wait_for(lambda: len(self.states.items) > 5 and self.arm_in.get_subscription_count() > 0
                        and self.hand_in.get_subscription_count() > 0, 30.0), "graph not up"

    def q(self) -> np.ndarray:
        msg = self.states.last
        order = [list(msg.name).index(n) for n in D.joints]
        return np.array(msg.position)[order]

    def send_arm(self, q_arm, horizon_s=0.05):
        point = JointTrajectoryPoint(positions=[float(v) for v in q_arm])
        point.time_from_start.nanosec = int(horizon_s * 1e9)
        self.arm_in.publish(JointTrajectory(joint_names=list(D.arm_joints), points=[point]))

    def stream(self, seconds, arm=None, hand=None, rate_hz=50.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if arm is not None:
                self.send_arm(arm)
            if hand is not None:
                self.hand_in.publish(Float64MultiArray(data=[float(v) for v in hand]))
            time.sleep(1.0 / rate_hz)

    def call(self, service: str, srv_type=Trigger, request=None):
        return call_service(self.node, srv_type, service, request or srv_type.Request())

    def set_param(self, node_name, name, value: bool):
        request = SetParameters.Request(parameters=[Parameter(
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))])
        return self.call(f"/{node_name}/set_parameters", SetParameters, request).results[0]

    def counts(self) -> dict[str, int]:
        for _, msg in reversed(self.diag.items):
            for status in msg.status:
                if status.name == "safety_monitor":
                    return {kv.key[6:-1]: int(kv.value) for kv in status.values if kv.key.startswith("count[")}
        return {}

    def settle(self):
        self.stream(0.3)
        time.sleep(CONFIG.command_timeout_s * 3)


@pytest.fixture
def cell(ros_node, sim_cell_graph):
    c = Cell(ros_node)
    yield c
    c.call("/safety_monitor/reset")  # leave the gate open for the next test


def test_nan_action_is_rejected_and_the_robot_holds(cell):
    cell.settle()
    q0 = cell.q()
    n_out = len(cell.hand_out.items)
    cell.stream(0.3, hand=[math.nan] * len(D.hand_joints))
    cell.stream(0.3, arm=[math.nan] * N_ARM)
    time.sleep(0.2)
    assert len(cell.hand_out.items) == n_out  # nothing forwarded
    np.testing.assert_allclose(cell.q(), q0, atol=5e-3)
    assert wait_for(lambda: any("non-finite" in r for r in cell.counts()), 3.0), cell.counts()


def test_out_of_limit_target_is_clamped_with_margin(cell):
    target = D.home(D.arm_joints)
    target[6] = D.limits["panda_joint7"].upper + 0.1  # just beyond panda_joint7's 2.8973 rad limit
    cell.stream(4.0, arm=target)
    upper = D.limits["panda_joint7"].upper - CONFIG.position_margin_rad
    forwarded = [m.points[0].positions[6] for _, m in cell.arm_out.items[-150:]]
    assert max(forwarded) <= upper + 1e-9
    assert cell.q()[6] == pytest.approx(upper, abs=0.02)
    cell.stream(4.0, arm=D.home(D.arm_joints))  # back home for the next test


def test_an_absurd_target_is_refused_whole_and_reported_to_the_sender(cell):
    rejected = Recorder()
    cell.node.create_subscription(DiagnosticStatus, REJECTED_TOPIC, rejected, common.COMMAND_QOS)
    cell.settle()
    q0 = cell.q()
    target = D.home(D.arm_joints)
    target[0] = 50.0  # the user's 50 rad: refused, not clamped and executed toward the joint limit
    start = time.monotonic()
    cell.stream(1.0, arm=target)
    assert not [t for t, _ in cell.arm_out.items if t > start + 0.05]  # nothing forwarded
    np.testing.assert_allclose(cell.q(), q0, atol=5e-3)  # the robot held
    assert wait_for(lambda: rejected.items, 3.0)
    status = rejected.last
    assert "panda_joint1 target 50.000 rad" in status.message and "refused" in status.message
    assert wait_for(lambda: cell.counts().get("arm: target too far outside the joint limits, refused", 0) > 0, 3.0)


def test_step_larger_than_the_velocity_limit_is_rate_limited(cell):
    cell.settle()
    start = len(cell.states.items)
    target = D.home(D.arm_joints)
    target[0] += 0.8
    cell.stream(2.5, arm=target)
    samples = cell.states.items[start:]
    v = np.array([m.velocity[list(m.name).index("panda_joint1")] for _, m in samples])  # the simulator's qvel
    v_limit = CONFIG.velocity_scale * D.limits["panda_joint1"].velocity
    assert np.abs(v).max() <= 1.15 * v_limit  # measured velocity of the simulated robot, small servo overshoot
    assert np.abs(v).max() >= 0.8 * v_limit  # and it did move at (close to) the limit, not stand still
    cell.stream(2.5, arm=D.home(D.arm_joints))


def test_when_the_command_stream_stops_the_robot_holds_within_the_timeout(cell):
    target = D.home(D.arm_joints)
    q_start, n_states = cell.q(), len(cell.states.items)
    for k in range(60):  # a moving stream at 50 Hz
        target[0] = D.home(D.arm_joints)[0] + 0.3 * math.sin(k / 15)
        cell.send_arm(target, horizon_s=0.02)
        time.sleep(0.02)
    stopped = time.monotonic()
    during = [m.position[list(m.name).index("panda_joint1")] for _, m in cell.states.items[n_states:]]
    assert max(abs(q - q_start[0]) for q in during) > 0.1  # it moved (a hold is only shown by a robot that moved)
    time.sleep(0.6)
    sent_after = [t for t, _ in cell.arm_out.items if t > stopped + CONFIG.command_timeout_s + 0.05]
    assert not sent_after  # nothing forwarded once the stream is stale
    q1 = cell.q()
    time.sleep(0.3)
    np.testing.assert_allclose(cell.q(), q1, atol=2e-3)  # holding
    assert wait_for(lambda: "watchdog: arm command stream stale, holding" in cell.counts(), 3.0)
    cell.stream(2.0, arm=D.home(D.arm_joints))


def test_stale_joint_states_stop_commands_and_reset_needs_fresh_state(cell):
    n_before = len(cell.hand_out.items)
    cell.stream(0.3, hand=D.home(D.hand_joints) + 0.2)
    assert len(cell.hand_out.items) > n_before + 5  # with fresh state the same stream passes
    assert cell.set_param("sim_cell", "publish_joint_states", False).successful
    try:
        time.sleep(CONFIG.state_timeout_s + 0.3)
        n_out = len(cell.hand_out.items)
        cell.stream(0.4, hand=D.home(D.hand_joints) + 0.2)
        assert len(cell.hand_out.items) == n_out  # no state: nothing passes
        assert cell.call("/safety_monitor/estop").success
        reset = cell.call("/safety_monitor/reset")
        assert not reset.success and "refused" in reset.message
    finally:
        assert cell.set_param("sim_cell", "publish_joint_states", True).successful
    assert wait_for(lambda: cell.call("/safety_monitor/reset").success, 5.0)


def test_estop_during_motion_lets_nothing_pass_after_it_is_acknowledged(cell):
    target = D.home(D.arm_joints)
    target[0] += 0.6
    # Stream until the arm is seen moving, not for a fixed time: on a loaded machine the cell steps slower.
    q_start = cell.q()
    end = time.monotonic() + 10.0
    while time.monotonic() < end and abs(cell.q()[0] - q_start[0]) <= 0.08:
        cell.send_arm(target)
        time.sleep(0.02)
    q_moving = cell.q()
    response = cell.call("/safety_monitor/estop")
    acknowledged = time.monotonic()
    assert response.success
    assert abs(q_moving[0] - q_start[0]) > 0.05  # it was moving when stopped
    cell.stream(0.5, arm=target)  # the source keeps sending: the gate must drop it all
    late = [t for t, _ in cell.arm_out.items if t > acknowledged + 0.01]
    assert not late, f"{len(late)} commands forwarded after the e-stop was acknowledged"
    q1 = cell.q()
    time.sleep(0.3)
    np.testing.assert_allclose(cell.q(), q1, atol=2e-3)
    # The topic latches the stop too, and a reset releases it.
    assert cell.call("/safety_monitor/reset").success
    cell.estop_topic.publish(Bool(data=True))
    time.sleep(0.2)
    n_out = len(cell.arm_out.items)
    cell.stream(0.3, arm=target)
    assert len(cell.arm_out.items) <= n_out + 1  # at most the hold command
    assert cell.call("/safety_monitor/reset").success
    cell.stream(3.0, arm=D.home(D.arm_joints))


def test_bad_safety_parameters_are_refused_and_old_values_kept(cell):
    request = SetParameters.Request(parameters=[Parameter(name="workspace_min_m", value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[2.0, 2.0, 2.0]))])
    result = cell.call("/safety_monitor/set_parameters", SetParameters, request).results[0]
    assert not result.successful and "workspace_min_m must be below" in result.reason
    request = SetParameters.Request(parameters=[Parameter(name="workspace_mode", value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value="ignore"))])
    result = cell.call("/safety_monitor/set_parameters", SetParameters, request).results[0]
    assert not result.successful and "not one of" in result.reason


def test_the_safety_monitor_is_the_only_publisher_of_driver_commands(cell):
    def publishers(topic):
        names = {info.node_name for info in cell.node.get_publishers_info_by_topic(topic)}
        return {name for name in names if not name.startswith("test_")}  # this test's own nodes

    for topic in (D.profile.arm.command.topic, D.profile.hand.command.topic):
        # Wait out discovery: a participant's node names arrive after its endpoints.
        assert wait_for(lambda t=topic: publishers(t) == {"safety_monitor"}, 5.0), f"{topic}: {publishers(topic)}"


def test_each_driver_command_carries_the_stamp_of_the_input_it_came_from(cell):
    """Latency tracing: the arm driver command keeps its input's header stamp; the hand driver's Float64MultiArray
    has no header, so each one is mirrored (same values) on /dexstack/safety/hand_command_stamped with the stamp of
    the stamped hand input (names in any order), and a zero stamp after an unstamped input."""
    from dexstack.nodes.safety_monitor import HAND_OUTPUT_STAMPED

    mirror = Recorder()
    cell.node.create_subscription(JointState, HAND_OUTPUT_STAMPED, mirror, common.COMMAND_QOS)
    stamped_in = cell.node.create_publisher(JointState, "/dexstack/hand/command_stamped", common.COMMAND_QOS)
    rejected = Recorder()
    cell.node.create_subscription(DiagnosticStatus, REJECTED_TOPIC, rejected, common.COMMAND_QOS)
    assert wait_for(lambda: stamped_in.get_subscription_count() > 0, 10.0)
    cell.settle()
    hand = cell.q()[N_ARM:]
    target = hand + 0.1  # the hand moves: the mirror must follow the driver values, not repeat a constant
    names = list(D.hand_joints)[::-1]  # another order: reordered by name
    sent = set()
    start = time.monotonic()
    for k in range(40):
        msg = JointState(name=names, position=[float(v) for v in target[::-1]])
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + k, 0
        sent.add((1000 + k) * 1_000_000_000)
        stamped_in.publish(msg)
        point = JointTrajectoryPoint(positions=[float(v) for v in cell.q()[:N_ARM]])
        point.time_from_start.nanosec = 50_000_000
        arm = JointTrajectory(joint_names=list(D.arm_joints), points=[point])
        arm.header.stamp.sec = 2000 + k
        cell.arm_in.publish(arm)
        time.sleep(0.02)
    time.sleep(0.1)
    arm_stamps = {common.stamp_to_ns(m.header.stamp) for t, m in cell.arm_out.items if t > start + 0.1}
    assert arm_stamps and arm_stamps <= {(2000 + k) * 1_000_000_000 for k in range(40)}, arm_stamps
    recent = [(t, m) for t, m in mirror.items if t > start + 0.1]
    assert recent and {common.stamp_to_ns(m.header.stamp) for _, m in recent} <= sent
    assert all(list(m.name) == list(D.hand_joints) for _, m in recent)
    # One mirror per driver command, with the same values: matched in order.
    driver = [m.data for t, m in cell.hand_out.items if t > start + 0.1]
    pairs = list(zip(driver[-20:], [m.position for _, m in recent][-20:]))
    assert len(pairs) == 20 and all(np.allclose(a, b) for a, b in pairs)
    assert np.abs(np.array(recent[-1][1].position) - target).max() < 0.02  # reached the (reordered) target
    # An unstamped input: the mirror says so with a zero stamp.
    later = time.monotonic()
    cell.stream(0.3, hand=target)
    assert wait_for(lambda: any(t > later + 0.1 for t, _ in mirror.items), 3.0)
    assert all(common.stamp_to_ns(m.header.stamp) == 0 for t, m in mirror.items if t > later + 0.1)
    # Wrong joint names: refused with the reason, reported to the sender with its stamp.
    bad = JointState(name=["nope"] * len(D.hand_joints), position=[0.0] * len(D.hand_joints))
    bad.header.stamp.sec = 7
    stamped_in.publish(bad)
    assert wait_for(lambda: any("not the hand joints" in m.message for _, m in rejected.items), 3.0)
    status = next(m for _, m in rejected.items if "not the hand joints" in m.message)
    assert {kv.key: kv.value for kv in status.values}["stamp_ns"] == str(7_000_000_000)
    cell.stream(1.0, hand=hand)  # back where it was for the next test
