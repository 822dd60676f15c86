"""dexstack-record: record demonstrations from the terminal, and replay, repair, inspect and export episodes.

    python -m dexstack.cli.record ui                 keyboard control of a running recorder node
    python -m dexstack.cli.record replay EPISODE     play its commands back through the safety monitor
    python -m dexstack.cli.record repair PATH        close episodes interrupted by a crash (kept, never overwritten)
    python -m dexstack.cli.record info EPISODE       metadata and message counts
    python -m dexstack.cli.record export EPISODES OUT   LeRobot v3.0 dataset (same as python -m dexstack.record.export)

Keys in the UI (like LeRobot's recorder): space/s start, right arrow/Enter/e stop and save, left arrow/d/Backspace
discard (re-record), y success, n failure, q/Esc quit (the recorder node keeps running). The UI shows the episode
index, elapsed time, message and dropped counts from the recorder's /diagnostics.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# key -> action; arrows arrive as escape sequences
KEYMAP = {
    " ": "start", "s": "start",
    "\x1b[C": "stop", "\r": "stop", "\n": "stop", "e": "stop",
    "\x1b[D": "discard", "d": "discard", "\x7f": "discard",
    "y": "success", "n": "failure",
    "q": "quit", "\x1b": "quit", "\x03": "quit",
}
HELP = "[space] start  [->/enter] save  [<-/d] discard  [y] success  [n] failure  [q] quit"


def action_for_key(key: str) -> str | None:
    """UI action for a key press (None: not bound)."""
    return KEYMAP.get(key, KEYMAP.get(key.lower()) if len(key) == 1 else None)


@dataclass
class RecorderView:
    """What the UI shows, from the recorder's diagnostics."""

    state: str = "waiting for the recorder..."
    level: int = 0
    message: str = ""
    episode_index: int = -1
    next_index: int = -1
    elapsed_s: float = 0.0
    messages: int = 0
    dropped: int = 0
    bytes_written: int = 0
    last_episode: str = ""
    error: str = ""
    rates: dict[str, str] = field(default_factory=dict)
    received_at: float = 0.0  # monotonic time of the diagnostics message

    @classmethod
    def from_values(cls, level: int, message: str, values: dict[str, str]) -> RecorderView:
        def num(key, kind=int, default=0):
            try:
                return kind(values.get(key, default))
            except ValueError:
                return default

        return cls(state=values.get("state", "?"), level=level, message=message,
                   episode_index=num("episode_index", default=-1), next_index=num("next_index", default=-1),
                   elapsed_s=num("elapsed_s", float, 0.0), messages=num("messages"), dropped=num("dropped"),
                   bytes_written=num("bytes_written"), last_episode=values.get("last_episode", ""),
                   error=values.get("error", ""),
                   rates={k[3:-1]: v for k, v in values.items() if k.startswith("hz[")},
                   received_at=time.monotonic())

    def lines(self, note: str = "") -> list[str]:
        """Plain text of the panel (the rich UI renders the same lines)."""
        elapsed = self.elapsed_s + (time.monotonic() - self.received_at if self.state == "recording" else 0.0)
        if self.state == "recording":
            head = f"RECORDING episode {self.episode_index}   {elapsed:6.1f} s"
        else:
            head = f"{self.state.upper()}   next episode {self.next_index}"
        out = [head,
               f"messages {self.messages}   dropped {self.dropped}   written {self.bytes_written / 2**20:.1f} MiB"]
        if self.rates:
            out.append("  ".join(f"{t.split('/')[-1] or t}:{r}Hz" for t, r in sorted(self.rates.items())[:8]))
        if self.last_episode:
            out.append(f"last saved: {self.last_episode}")
        if self.error:
            out.append(f"ERROR: {self.error}")
        if note:
            out.append(note)
        out.append(HELP)
        return out


class _Keys:
    """Raw single-key input from the terminal (restored on close)."""

    def __init__(self):
        import termios
        import tty

        self.fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def read(self, timeout_s: float) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return None
        key = os.read(self.fd, 1).decode(errors="ignore")
        if key == "\x1b":  # an arrow is ESC [ X; a lone ESC is quit
            more, _, _ = select.select([self.fd], [], [], 0.02)
            if more:
                key += os.read(self.fd, 2).decode(errors="ignore")
        return key

    def close(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def run_ui(args: argparse.Namespace) -> int:
    from dexstack.rosenv import force_localhost_dds

    if args.localhost:
        force_localhost_dds()
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from std_srvs.srv import SetBool, Trigger

    from dexstack.nodes.common import BackgroundSpin

    rclpy.init()
    node = rclpy.create_node("record_ui")
    view = RecorderView()
    name = args.node.strip("/").split("/")[-1]
    lock = threading.Lock()
    note = [""]

    def on_diag(msg: DiagnosticArray) -> None:
        nonlocal view
        for status in msg.status:
            if status.name == "recorder" and status.hardware_id == name:
                with lock:
                    view = RecorderView.from_values(status.level[0] if isinstance(status.level, bytes)
                                                    else int(status.level), status.message,
                                                    {kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    clients = {a: node.create_client(Trigger, f"{args.node}/{a}") for a in ("start", "stop", "discard")}
    success_client = node.create_client(SetBool, f"{args.node}/set_success")
    shutdown = BackgroundSpin(node, name="record-cli").close

    def call(action: str) -> None:
        if action in clients:
            client, request = clients[action], Trigger.Request()
        else:
            client, request = success_client, SetBool.Request(data=action == "success")
        if not client.service_is_ready():
            note[0] = f"{args.node} is not available"
            return
        future = client.call_async(request)
        future.add_done_callback(lambda f: note.__setitem__(0, f.result().message if f.result() else "no answer"))

    keys = _Keys() if sys.stdin.isatty() else None
    try:
        try:
            from rich.live import Live
            from rich.panel import Panel
            from rich.text import Text

            def render():
                with lock:
                    lines = view.lines(note[0])
                style = "bold red" if view.state == "recording" else ("bold yellow" if view.error else "bold green")
                text = Text("\n".join(lines[1:]))
                return Panel(text, title=Text(lines[0], style=style), subtitle=args.node)

            live = Live(render(), refresh_per_second=10, transient=False)
        except ImportError:  # plain ANSI
            live = None

            def render():
                with lock:
                    lines = view.lines(note[0])
                return "\x1b[2J\x1b[H" + "\n".join(lines)
        if live is not None:
            live.start()
        while True:
            key = keys.read(0.1) if keys is not None else (time.sleep(0.1) or None)
            action = action_for_key(key) if key else None
            if action == "quit":
                break
            if action is not None:
                note[0] = f"{action}..."
                call(action)
            if live is not None:
                live.update(render())
            else:
                sys.stdout.write(render())
                sys.stdout.flush()
        if live is not None:
            live.stop()
    except KeyboardInterrupt:
        pass
    finally:
        if keys is not None:
            keys.close()
        shutdown()
    return 0


# ---------------------------------------------------------------------- replay
def _restamp_trajectory(data: bytes, type_name: str) -> bytes:
    """A JointTrajectory with a header stamp in the past would start in the past: zero it (= start on receipt)."""
    if type_name != "trajectory_msgs/msg/JointTrajectory":
        return data
    from rclpy.serialization import deserialize_message, serialize_message
    from trajectory_msgs.msg import JointTrajectory

    msg = deserialize_message(data, JointTrajectory)
    if msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0:
        return data
    msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
    return serialize_message(msg)


def replay_episode(node, episode_dir: Path, speed: float = 1.0, goto_start: bool = False, settle_s: float = 3.0,
                   log=print) -> int:
    """Publish an episode's pre-gate commands from ``node`` (an rclpy node) with the original timing; with
    ``goto_start``, first drive the robot (through the safety monitor) to where the episode's commands began.
    Returns the number of commands published."""
    from builtin_interfaces.msg import Duration
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dexstack.nodes import common
    from dexstack.nodes.recorder import message_class
    from dexstack.nodes.safety_link import SafetyLink
    from dexstack.record.episode import load_episode_info
    from dexstack.record.replay import load_replay, play
    from dexstack.robot import load_description

    plan = load_replay(episode_dir)
    safety = SafetyLink(node)
    publishers = {}
    for item in plan.items:
        if item.topic not in publishers:
            publishers[item.topic] = node.create_publisher(message_class(item.type_name), item.topic,
                                                           common.COMMAND_QOS)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
        time.sleep(0.05)
    missing = [t for t, p in publishers.items() if not p.get_subscription_count()]
    if missing:
        log(f"warning: nobody subscribes to {missing} (is the safety monitor running?)")
    while time.monotonic() < deadline + 10.0 and not safety.ready:  # a command sent before would be refused
        time.sleep(0.05)
    if not safety.ready:
        log("warning: the safety monitor does not report ready (/dexstack/safety/ready); its refusals are logged")
    if goto_start:
        info = load_episode_info(Path(episode_dir))
        d = load_description(info.robot_profile or "panda_allegro")
        arm_q, hand_q = plan.initial(d.arm_joints), plan.initial(d.hand_joints)
        arm_pub = node.create_publisher(JointTrajectory, "/dexstack/arm/command", common.COMMAND_QOS)
        hand_pub = node.create_publisher(Float64MultiArray, "/dexstack/hand/command", common.COMMAND_QOS)
        log(f"moving to the episode's start ({settle_s:.1f} s)")
        end = time.monotonic() + settle_s
        while time.monotonic() < end:  # stream so the safety monitor's command watchdog stays satisfied
            point = JointTrajectoryPoint(positions=arm_q.tolist(), time_from_start=Duration(nanosec=50_000_000))
            arm_pub.publish(JointTrajectory(joint_names=list(d.arm_joints), points=[point]))
            hand_pub.publish(Float64MultiArray(data=hand_q.tolist()))
            time.sleep(0.02)
    log(f"replaying {len(plan.items)} commands over {plan.duration_s:.1f} s")
    return play(plan.items, lambda it: publishers[it.topic].publish(_restamp_trajectory(it.data, it.type_name)),
                speed=speed)


def run_replay(args: argparse.Namespace) -> int:
    from dexstack.rosenv import force_localhost_dds

    if args.localhost:
        force_localhost_dds()
    import rclpy

    from dexstack.nodes.common import BackgroundSpin

    rclpy.init()
    node = rclpy.create_node("record_replay")
    shutdown = BackgroundSpin(node, name="record-cli").close
    try:
        n = replay_episode(node, args.episode, speed=args.speed, goto_start=args.goto_start, settle_s=args.settle_s)
        time.sleep(0.5)  # let the last messages leave
        print(f"published {n} commands")
    except (FileNotFoundError, ValueError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        shutdown()
    return 0


# ---------------------------------------------------------------------- files
def run_repair(args: argparse.Namespace) -> int:
    from dexstack.record.episode import METADATA_FILE, EpisodeStore, recover_episode

    path = Path(args.path)
    if path.suffix == ".mcap":
        from dexstack.record.mcap_io import repair_mcap

        r = repair_mcap(path)
        print(f"{path}: {'repaired' if r.repaired else 'already complete'}, {r.message_count} messages")
        return 0
    if list(path.glob("*.mcap")):
        if (path / METADATA_FILE).is_file() and not args.force:
            print(f"{path}: complete (metadata.yaml present; --force to rebuild it)")
            return 0
        r = recover_episode(path)
        print(f"{path}: recovered {r.message_count} messages ({r.reason}; cut {r.dropped_bytes} bytes)")
        return 0
    reports = EpisodeStore(path).recover_interrupted()
    for r in reports:
        print(f"{r.path}: {r.reason}; {r.message_count} messages kept")
    if not reports:
        print(f"{path}: no interrupted episodes")
    return 1 if any(r.message_count < 0 for r in reports) else 0


def run_info(args: argparse.Namespace) -> int:
    from dexstack.record.episode import load_episode_info
    from dexstack.record.mcap_io import scan_mcap

    path = Path(args.episode)
    info = load_episode_info(path)
    for key, value in vars(info).items():
        if key == "calibration":
            value = f"<{len(value)} characters>"
        print(f"{key:18s} {value}")
    for mcap in sorted(path.glob("*.mcap")):
        scan = scan_mcap(mcap)
        print(f"{mcap.name}: {'complete' if scan.complete else 'INCOMPLETE (' + scan.reason + ')'}, "
              f"{scan.summary.message_count} messages")
        for topic, n in sorted(scan.summary.topic_counts().items()):
            print(f"  {topic:55s} {n}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexstack-record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    ui = sub.add_parser("ui", help="keyboard control of a recorder node")
    ui.add_argument("--node", default="/recorder", help="recorder node name")
    ui.add_argument("--localhost", action=argparse.BooleanOptionalAction, default=True,
                    help="force localhost-only DDS (the sim rule; --no-localhost on a robot workstation)")
    rp = sub.add_parser("replay", help="play an episode's commands back through the safety monitor")
    rp.add_argument("episode", type=Path)
    rp.add_argument("--speed", type=float, default=1.0)
    rp.add_argument("--goto-start", action="store_true", help="first move to where the episode's commands began")
    rp.add_argument("--settle-s", type=float, default=3.0)
    rp.add_argument("--localhost", action=argparse.BooleanOptionalAction, default=True)
    rep = sub.add_parser("repair", help="close interrupted episodes (an episode dir, an .mcap or the folder)")
    rep.add_argument("path", type=Path)
    rep.add_argument("--force", action="store_true", help="rebuild metadata.yaml even if present")
    inf = sub.add_parser("info", help="episode metadata and counts")
    inf.add_argument("episode", type=Path)
    sub.add_parser("export", help="LeRobot v3.0 export (see python -m dexstack.record.export -h)", add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        from dexstack.record.export import main as export_main

        return export_main(argv[1:])
    args = parser.parse_args(argv or ["ui"])
    return {"ui": run_ui, "replay": run_replay, "repair": run_repair, "info": run_info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
