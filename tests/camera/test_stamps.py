"""StampConverter: frame stamps to ROS time (pass-through host domains, fixed offsets, re-anchoring, monotonicity)."""

from __future__ import annotations

import pytest

from dexstack.camera.stamps import StampConverter

PERIOD = 33_333_333
NOW = 1_700_000_000_000_000_000  # a ROS time in 2023, ns
LATENCY = 5_000_000


def device_stamps(n: int, start: int = 7_000_000_000) -> list[int]:
    return [start + k * PERIOD for k in range(n)]


def test_host_epoch_domains_pass_through_unchanged():
    conv = StampConverter()
    for domain in ("global_time", "system_time"):
        stamp = NOW - 12_345
        assert conv.to_ros_ns(stamp, domain, now_ns=NOW) == stamp
        assert conv.to_ros_ns(stamp + PERIOD, domain, now_ns=NOW + 10**12) == stamp + PERIOD  # no drift guard
    assert conv.offset_ns is None and conv.reanchor_total == 0


def test_hardware_clock_is_anchored_at_the_first_frame_and_keeps_the_device_spacing():
    conv = StampConverter()
    stamps = device_stamps(10)
    # Host receive times jitter; the output spacing must not.
    out = [conv.to_ros_ns(s, "hardware_clock", NOW + k * PERIOD + LATENCY + (k % 3) * 1_000_000)
           for k, s in enumerate(stamps)]
    assert out[0] == NOW + LATENCY
    assert [b - a for a, b in zip(out, out[1:])] == [PERIOD] * 9
    assert conv.reanchor_total == 0 and conv.backwards == 0


def test_playback_offsets_every_domain():
    conv = StampConverter(rebase_all=True)
    recorded = NOW - 86_400 * 10**9  # recorded yesterday, in global_time
    assert conv.to_ros_ns(recorded, "global_time", NOW) == NOW
    assert conv.to_ros_ns(recorded + PERIOD, "global_time", NOW + 40_000_000) == NOW + PERIOD


def test_a_clock_reset_reanchors_and_stays_monotonic():
    conv = StampConverter()
    first = [conv.to_ros_ns(s, "hardware_clock", NOW + k * PERIOD) for k, s in enumerate(device_stamps(5))]
    # The device restarts its counter: stamps go back to ~0, host time goes on.
    now = NOW + 5 * PERIOD
    after = [conv.to_ros_ns(s, "hardware_clock", now + k * PERIOD) for k, s in enumerate(device_stamps(3, start=0))]
    assert conv.reanchors == {"backwards": 1} and conv.backwards == 1
    assert after[0] == now
    assert [b - a for a, b in zip(after, after[1:])] == [PERIOD, PERIOD]
    stamps = first + after
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_a_looping_playback_reanchors_each_loop():
    conv = StampConverter(rebase_all=True)
    loop = device_stamps(4)
    out, now = [], NOW
    for _ in range(3):
        for s in loop:
            out.append(conv.to_ros_ns(s, "hardware_clock", now))
            now += PERIOD
    assert conv.reanchors == {"backwards": 2}
    assert all(b > a for a, b in zip(out, out[1:]))
    for i in range(3):
        chunk = out[4 * i: 4 * i + 4]
        assert [b - a for a, b in zip(chunk, chunk[1:])] == [PERIOD] * 3


def test_repeated_stamp_does_not_produce_a_repeated_ros_stamp():
    conv = StampConverter()
    a = conv.to_ros_ns(5_000, "hardware_clock", NOW)
    b = conv.to_ros_ns(5_000, "hardware_clock", NOW)  # host time did not advance either
    assert b == a + 1
    assert conv.to_ros_ns(5_000 + PERIOD, "hardware_clock", NOW + PERIOD) == b + PERIOD


def test_drift_beyond_the_bound_reanchors():
    conv = StampConverter(max_error_ns=100_000_000)
    conv.to_ros_ns(0, "hardware_clock", NOW)
    # Device clock 1% fast: after 9 s the offset stamp is 90 ms ahead: still within the bound.
    assert conv.to_ros_ns(9_090_000_000, "hardware_clock", NOW + 9_000_000_000) == NOW + 9_090_000_000
    assert conv.reanchor_total == 0
    # 11 s: 111 ms ahead -> re-anchored at the host time, but never before the previous output.
    out = conv.to_ros_ns(11_110_000_000, "hardware_clock", NOW + 11_000_000_000)
    assert conv.reanchors == {"drift": 1}
    assert out == NOW + 11_000_000_000


def test_reanchoring_never_goes_back_in_time():
    conv = StampConverter(max_error_ns=100_000_000)
    conv.to_ros_ns(0, "hardware_clock", NOW)
    ahead = conv.to_ros_ns(90_000_000, "hardware_clock", NOW)  # 90 ms ahead of the host, allowed
    reset = conv.to_ros_ns(1_000, "hardware_clock", NOW + 1_000_000)  # reset while the host is behind the output
    assert reset == ahead + 1
    nxt = conv.to_ros_ns(1_000 + PERIOD, "hardware_clock", NOW + PERIOD)
    assert nxt == reset + PERIOD


def test_domain_change_and_restart_reanchor():
    conv = StampConverter()
    a = conv.to_ros_ns(10**9, "hardware_clock", NOW)
    b = conv.to_ros_ns(NOW + PERIOD, "global_time", NOW + PERIOD)  # the device switched to global time
    assert b == NOW + PERIOD
    c = conv.to_ros_ns(2 * 10**9, "hardware_clock", NOW + 2 * PERIOD)  # and back
    assert conv.reanchors == {"domain_change": 1}
    assert c == NOW + 2 * PERIOD and a < b < c
    conv.restart()  # the source was reopened: a new device clock
    d = conv.to_ros_ns(10**9 + 10**12, "hardware_clock", NOW + 3 * PERIOD)
    assert conv.reanchors == {"domain_change": 1, "restart": 1}
    assert d == NOW + 3 * PERIOD


def test_first_frame_after_construction_is_not_a_reanchor():
    conv = StampConverter()
    conv.restart()
    conv.to_ros_ns(1, "hardware_clock", NOW)
    assert conv.reanchor_total == 0


def test_unknown_domains_are_offset_and_bad_bounds_refused():
    conv = StampConverter()
    assert conv.uses_offset("some_future_domain") and conv.uses_offset("hardware_clock")
    assert not conv.uses_offset("global_time")
    assert StampConverter(rebase_all=True).uses_offset("system_time")
    with pytest.raises(ValueError, match="max_error_ns"):
        StampConverter(max_error_ns=0)
