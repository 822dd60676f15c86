"""Frame stamps to ROS time, without ROS: pure integer arithmetic on nanoseconds.

A frame keeps its own capture stamp (``RGBDFrame.stamp_ns`` in the clock named by ``stamp_domain``); a
ROS message needs a stamp in ROS time. How the two relate depends on where the stamp comes from:

* ``global_time`` and ``system_time`` (a live device): librealsense already expresses these in host epoch
  time, so they pass through unchanged. A host clock step shows up as-is (and is counted in ``backwards``).
* ``hardware_clock`` (a live device's own counter), and **every** domain of a file played back (its stamps
  are from the recording session): the first frame fixes an offset ``ros = stamp + offset`` so that
  that frame gets the host's current ROS time. Later frames keep the same offset, so the spacing between
  published stamps is exactly the device/file spacing.

  A stamp must never be later than the frame's receipt: downstream time synchronisation and TF lookups
  break on stamps from the future. With capture time ``c_k`` and transport latency ``L_k``, a fixed offset
  gives ``ros_k - now_k = L_0 - L_k``: every frame faster than the first would land in the future. So the
  offset follows the *fastest* frame seen: when ``stamp + offset`` would exceed ``now``, it is re-anchored
  to ``now - stamp`` (reason ``"future"``). It only ever decreases this way, a few times over the first
  frames until the fastest transport has been seen, so stamps stay at most the minimum latency late and the
  spacing stays the device's between re-anchors.

The offset is re-chosen (``reanchors``, counted by reason) when the stamp does not increase (device clock
reset or wrap, a looping playback starting over: ``"backwards"``), when the stamp domain changes
(``"domain_change"``), when the offset stamp drifts more than ``max_error_ns`` away from the host clock
(device/host clock drift, a stall: ``"drift"``), after :meth:`StampConverter.restart` (a new session
of the source: ``"restart"``), and when a frame would land in the future (``"future"``, above). Offset
stamps never go backwards: a re-anchored stamp is at least 1 ns after the previous output (the one case
where a stamp can pass ``now``, by 1 ns: two frames received at the same host time).
"""

from __future__ import annotations

from collections import Counter

HOST_EPOCH_DOMAINS = frozenset({"global_time", "system_time"})

DEFAULT_MAX_ERROR_NS = 1_000_000_000


class StampConverter:
    """Converts the stamps of one stream of frames to ROS time (see the module notes).

    ``rebase_all``: give every domain an offset (file playback). ``max_error_ns``: re-anchor an offset stamp
    that is further than this from ``now_ns`` (None: never). Not thread-safe: use from the capture thread.
    """

    def __init__(self, *, rebase_all: bool = False, max_error_ns: int | None = DEFAULT_MAX_ERROR_NS):
        if max_error_ns is not None and max_error_ns <= 0:
            raise ValueError(f"max_error_ns must be positive or None, got {max_error_ns}")
        self.rebase_all = rebase_all
        self.max_error_ns = max_error_ns
        self.offset_ns: int | None = None  # ros = stamp + offset_ns while anchored
        self.reanchors: Counter[str] = Counter()
        self.backwards = 0  # input stamps that did not increase (any domain)
        self._domain: str | None = None
        self._last_stamp_ns: int | None = None
        self._last_out_ns: int | None = None
        self._pending_reason: str | None = None

    def uses_offset(self, domain: str) -> bool:
        """Whether stamps of ``domain`` get an offset (False: they are host epoch time already). A domain
        this module does not know is treated like ``hardware_clock``."""
        return self.rebase_all or domain not in HOST_EPOCH_DOMAINS

    def restart(self) -> None:
        """The source was reopened (new device session, new file): anchor again at the next frame, keeping
        published stamps monotonic across the gap."""
        if self._last_out_ns is not None:
            self._pending_reason = "restart"
        self.offset_ns = None
        self._domain = None
        self._last_stamp_ns = None

    def to_ros_ns(self, stamp_ns: int, domain: str, now_ns: int) -> int:
        """ROS time (ns) of a frame captured at ``stamp_ns`` in ``domain``, given the ROS time ``now_ns``."""
        stamp_ns, now_ns = int(stamp_ns), int(now_ns)
        offset = self.uses_offset(domain)
        went_back = self._last_stamp_ns is not None and domain == self._domain and stamp_ns <= self._last_stamp_ns
        if went_back:
            self.backwards += 1
        if not offset:
            self.offset_ns = None
            self._domain, self._last_stamp_ns = domain, stamp_ns
            self._last_out_ns = stamp_ns
            return stamp_ns

        reason = None
        if self.offset_ns is None:
            reason = self._pending_reason or ("domain_change" if self._last_out_ns is not None else None)
            self._pending_reason = None
            self.offset_ns = now_ns - stamp_ns  # first frame (reason None) or after a restart/host-epoch spell
        elif domain != self._domain:
            reason = "domain_change"
        elif went_back:
            reason = "backwards"
        elif self.max_error_ns is not None and abs(stamp_ns + self.offset_ns - now_ns) > self.max_error_ns:
            reason = "drift"
        elif stamp_ns + self.offset_ns > now_ns:
            reason = "future"  # this frame came faster than the one the offset was fixed on
        if reason is not None:
            self.reanchors[reason] += 1
            self.offset_ns = now_ns - stamp_ns
        out = stamp_ns + self.offset_ns
        if self._last_out_ns is not None and out <= self._last_out_ns:
            # Only possible right after a re-anchor (a non-decreasing stamp with a fixed offset increases).
            out = self._last_out_ns + 1
            self.offset_ns = out - stamp_ns
        self._domain, self._last_stamp_ns, self._last_out_ns = domain, stamp_ns, out
        return out

    @property
    def reanchor_total(self) -> int:
        return sum(self.reanchors.values())
