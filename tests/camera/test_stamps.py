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
    # b is 1 ns ahead of its receipt (monotonic first); the next frame is brought back to its receipt time.
    assert conv.to_ros_ns(5_000 + PERIOD, "hardware_clock", NOW + PERIOD) == NOW + PERIOD


def test_drift_beyond_the_bound_reanchors():
    conv = StampConverter(max_error_ns=100_000_000)
    conv.to_ros_ns(0, "hardware_clock", NOW)
    # Device clock 1% slow: after 9 s the offset stamp is 90 ms behind the host: still within the bound.
    assert conv.to_ros_ns(8_910_000_000, "hardware_clock", NOW + 9_000_000_000) == NOW + 8_910_000_000
    assert conv.reanchor_total == 0
    # 11 s: 110 ms behind -> re-anchored at the host time.
    out = conv.to_ros_ns(10_890_000_000, "hardware_clock", NOW + 11_000_000_000)
    assert conv.reanchors == {"drift": 1}
    assert out == NOW + 11_000_000_000


def test_a_fast_device_clock_is_held_at_the_receipt_time():
    conv = StampConverter(max_error_ns=100_000_000)
    conv.to_ros_ns(0, "hardware_clock", NOW)
    # Device clock 1% fast: its stamps run ahead of the host; each is brought back to its receipt time.
    for k in range(1, 5):
        now = NOW + k * 1_000_000_000
        assert conv.to_ros_ns(k * 1_010_000_000, "hardware_clock", now) == now
    assert conv.reanchors == {"future": 4}


def test_reanchoring_never_goes_back_in_time():
    conv = StampConverter(max_error_ns=100_000_000)
    first = conv.to_ros_ns(5_000_000, "hardware_clock", NOW)
    reset = conv.to_ros_ns(1_000, "hardware_clock", NOW)  # device reset while the host clock did not advance
    assert conv.reanchors == {"backwards": 1}
    assert reset == first + 1
    nxt = conv.to_ros_ns(1_000 + PERIOD, "hardware_clock", NOW + PERIOD)
    assert nxt == NOW + PERIOD > reset


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


def test_stamps_never_land_after_their_receipt_time():
    """The first frame arrives slowly (30 ms), later ones faster: a fixed offset would put them in the future."""
    conv = StampConverter()
    latencies = [30_000_000, 12_000_000, 4_000_000, 9_000_000, 4_500_000, 20_000_000, 4_000_000, 6_000_000]
    received, out = [], []
    for k, (stamp, latency) in enumerate(zip(device_stamps(len(latencies)), latencies)):
        now = NOW + k * PERIOD + latency
        received.append(now)
        out.append(conv.to_ros_ns(stamp, "hardware_clock", now))
    assert all(o <= r for o, r in zip(out, received)), [r - o for o, r in zip(out, received)]
    # Anchored on the fastest frame: every stamp is late by its own latency minus the fastest one.
    assert [r - o for o, r in zip(out, received)][2:] == [lat - 4_000_000 for lat in latencies[2:]]
    assert conv.reanchors == {"future": 2}  # 30 ms -> 12 ms -> 4 ms; never again once the fastest was seen
    assert all(b > a for a, b in zip(out, out[1:]))
    assert [b - a for a, b in zip(out[2:], out[3:])] == [PERIOD] * 5  # device spacing kept after that


def test_random_transport_jitter_keeps_stamps_in_the_past_and_close_to_capture():
    import random

    rng = random.Random(0)
    conv = StampConverter()
    latencies, lateness = [], []
    for k, stamp in enumerate(device_stamps(300)):
        latencies.append(3_000_000 + int(rng.expovariate(1 / 5_000_000)))  # >= 3 ms, long tail
        now = NOW + k * PERIOD + latencies[-1]
        out = conv.to_ros_ns(stamp, "hardware_clock", now)
        assert out <= now
        lateness.append(now - out)
    fastest = min(range(300), key=lambda k: latencies[k])
    # From the fastest frame on, each stamp is its capture time plus the fastest latency: late by exactly its
    # own latency minus the fastest (a fixed first-frame offset was off by the first frame's latency instead).
    assert lateness[fastest:] == [lat - latencies[fastest] for lat in latencies[fastest:]]
    assert conv.reanchors["future"] < 20
