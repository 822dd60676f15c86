"""Start the nodes of a launch file as separate processes over real DDS, and stop them cleanly.

Sim/test entry point: localhost-only DDS is forced for every process it starts (the network rule).
``dexstack-launch sim_cell cell:=tabletop`` is the pip-install equivalent of
``ros2 launch dexstack sim_cell.launch.xml``.

Stopping: Ctrl-C, SIGTERM (systemd, docker, process managers) and SIGHUP (terminal closed) all stop the graph the
same way: SIGINT to each node, SIGKILL after a timeout. Nodes also die with the launcher when it is killed hard
(SIGKILL, a crash): each is started with the Linux parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import yaml

from dexstack.launch.xml import LaunchDescription, LaunchError, NodeAction, parse_launch_file
from dexstack.paths import PACKAGE_NAME
from dexstack.processes import STACK_DUMP_SIGNAL, die_with_parent_preexec
from dexstack.rosenv import force_localhost_dds


def node_module(executable: str) -> str:
    """Module of a dexstack console script (setup.py's entry points are the one list of executables)."""
    for ep in entry_points(group="console_scripts"):
        if ep.name == executable and ep.dist is not None and ep.dist.name == PACKAGE_NAME:
            module, _, func = ep.value.partition(":")
            if func != "main":
                raise LaunchError(f"entry point {executable} = {ep.value} must point at a module's main()")
            return module
    raise LaunchError(f"'{executable}' is not a {PACKAGE_NAME} executable (is the package installed? pip install -e .)")


def param_value(text: str):
    """A launch-file ``<param value>`` typed as ``ros2 launch`` types it: a YAML scalar or list, else the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None or isinstance(value, dict) else value


def node_command(node: NodeAction, python: str = sys.executable, param_dir: Path | None = None) -> list[str]:
    """The command line of one node. Single parameters go through a YAML file (as launch_ros does), so values
    with ':' or spaces stay strings; the file is written to ``param_dir`` (default: a new temporary folder)."""
    if node.package != PACKAGE_NAME:
        raise LaunchError(f"node '{node.name}' is from package '{node.package}': only {PACKAGE_NAME} nodes run here")
    cmd = [python, "-m", node_module(node.executable), "--ros-args", "-r", f"__node:={node.name}"]
    for path in node.param_files:
        if not path.is_file():
            raise LaunchError(f"parameter file {path} for node '{node.name}' does not exist")
        cmd += ["--params-file", str(path)]
    if node.params:
        param_dir = Path(tempfile.mkdtemp(prefix="dexstack_params_")) if param_dir is None else param_dir
        param_dir.mkdir(parents=True, exist_ok=True)
        path = param_dir / f"{node.name}.params.yaml"
        values = {name: param_value(value) for name, value in node.params.items()}
        path.write_text(yaml.safe_dump({node.name: {"ros__parameters": values}}))
        cmd += ["--params-file", str(path)]
    for src, dst in node.remaps:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


@dataclass
class RunningNode:
    name: str
    process: subprocess.Popen
    log_path: Path | None


class LaunchedGraph:
    """The processes of one launch description. Use as a context manager: exit stops every node."""

    def __init__(self, description: LaunchDescription, log_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None):
        self.description = description
        self.log_dir = log_dir
        self.env = dict(os.environ)
        self.env.update(description.env)
        self.env.update(extra_env or {})
        force_localhost_dds(self.env)
        self.nodes: list[RunningNode] = []

    def start(self) -> LaunchedGraph:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        # The parent-death signal fires when the forking *thread* ends: only tie nodes to the main thread's life.
        preexec = die_with_parent_preexec() if threading.current_thread() is threading.main_thread() else None
        for node in self.description.nodes:
            cmd = node_command(node, param_dir=self.log_dir)
            log_path = self.log_dir / f"{node.name}.log" if self.log_dir is not None else None
            out = open(log_path, "w") if log_path is not None else None  # noqa: SIM115 (closed with the process)
            process = subprocess.Popen(cmd, env=self.env, stdout=out or None, stderr=subprocess.STDOUT if out else None,
                                       start_new_session=True, preexec_fn=preexec)
            self.nodes.append(RunningNode(node.name, process, log_path))
        return self

    def failed(self) -> list[str]:
        """Names of nodes that have exited."""
        return [n.name for n in self.nodes if n.process.poll() is not None]

    def stop(self, timeout_s: float = 10.0) -> dict[str, int]:
        """SIGINT every node (clean rclpy shutdown), then SIGKILL what is left; return exit codes.

        A node still running at ``timeout_s`` first gets ``STACK_DUMP_SIGNAL``: its threads' stacks go to its log,
        so the hang can be read there, then it is killed (exit code -9)."""
        for n in self.nodes:
            if n.process.poll() is None:
                n.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        codes = {}
        for n in self.nodes:
            try:
                codes[n.name] = n.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.process.send_signal(STACK_DUMP_SIGNAL)
                try:
                    codes[n.name] = n.process.wait(timeout=1.0)  # the dump takes milliseconds; a node may end meanwhile
                except subprocess.TimeoutExpired:
                    n.process.kill()
                    codes[n.name] = n.process.wait()
        return codes

    def __enter__(self) -> LaunchedGraph:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexstack-launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("launch_file", help="name in launch/ (e.g. sim_cell) or a path to a .launch.xml")
    parser.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    args = parser.parse_args(argv)
    try:
        arguments = dict(a.split(":=", 1) for a in args.arguments)
    except ValueError:
        parser.error("launch arguments are written name:=value")
    try:
        graph = LaunchedGraph(parse_launch_file(args.launch_file, arguments)).start()
    except LaunchError as exc:
        print(f"dexstack-launch: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        if not stop.is_set():
            print(f"dexstack-launch: {signal.Signals(signum).name}: stopping the graph", file=sys.stderr)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)  # later signals while stopping only repeat the request
    print(f"started {[n.name for n in graph.nodes]}; Ctrl-C (or SIGTERM/SIGHUP) stops them")
    while not graph.failed() and not stop.is_set():
        stop.wait(0.2)
    if not stop.is_set():
        print(f"node(s) exited: {graph.failed()}", file=sys.stderr)
    codes = graph.stop()
    return 0 if all(c in (0, -signal.SIGINT) for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
