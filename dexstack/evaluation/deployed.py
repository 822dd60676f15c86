"""Deployed-path evaluation: run a policy bundle on references through the launched sim graph and score it.

The graph is ``launch/sim_policy.launch.xml`` as a user starts it (``sim_cell``, ``safety_monitor``,
``object_pose``, ``policy`` as separate processes over real DDS, the camera rendering and perception on), one fresh
graph per reference (the cube is placed at the reference's start by the launch file's ``object_start`` argument).
An :class:`~dexstack.nodes.episode_probe.EpisodeProbe` in this process records the simulator's ground-truth
object pose, the commands and the perceived poses, and :func:`~dexstack.evaluation.scoring.score_episode` scores
them with the in-process metric aligned to the policy's first command. With ``gt_object_pose`` the policy is fed
``/dexstack/sim/object_pose_gt`` by a remap (perception still runs, so the load is the same): it separates
perception from control.

Reusable by any bench (grasping, V-GPS): :func:`run_deployed` takes a bundle, references and
:class:`DeployedOptions`. The caller must have forced localhost DDS before importing rclpy
(:func:`dexstack.rosenv.force_localhost_dds`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dexstack.evaluation.scoring import DeployedResult, EpisodeRecord, ScoringConfig, intervention_note, score_episode
from dexstack.launch.runner import LaunchedGraph
from dexstack.launch.xml import LaunchDescription, parse_launch_file
from dexstack.policies.reference import ReferenceTrajectory

OBJECT_POSE_TOPIC = "/dexstack/object_pose"
OBJECT_GT_TOPIC = "/dexstack/sim/object_pose_gt"
GRASP_TARGET_TOPIC = "/dexstack/grasp/target"  # grasp_target -> policy (std_msgs/String, latched JSON)


@dataclass(frozen=True)
class DeployedOptions:
    launch_file: str = "sim_policy"
    launch_args: dict[str, str] = field(default_factory=dict)  # extra launch arguments (e.g. use_sim_time)
    gt_object_pose: bool = False  # feed the policy the simulator's object pose instead of perception's
    place_object: bool = True  # the sim puts the cube at the reference's start (launch argument object_start)
    startup_timeout_s: float = 120.0  # until the policy's first command (bundle loading, perception lock-on)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    log_dir: Path | None = None  # node logs per episode (default: a temporary folder, removed)

    def __post_init__(self) -> None:
        if self.startup_timeout_s <= 0:
            raise ValueError(f"startup_timeout_s must be > 0, got {self.startup_timeout_s}")


def graph_description(bundle: str, reference: str, options: DeployedOptions) -> LaunchDescription:
    """The launch description of one episode: the launch file with the bundle/reference arguments, the cube's
    placement, and (gt_object_pose) the policy's object pose remapped to the ground truth."""
    args = {"policy": bundle, "reference": reference, **options.launch_args}
    if options.place_object:
        args.setdefault("object_start", f"reference:{reference}")
    description = parse_launch_file(options.launch_file, args)
    if options.gt_object_pose:
        policy_nodes = [n for n in description.nodes if n.executable == "policy"]
        if not policy_nodes:
            raise ValueError(f"launch file {options.launch_file} starts no policy node")
        for node in policy_nodes:
            node.remaps.append((OBJECT_POSE_TOPIC, OBJECT_GT_TOPIC))
    return description


def run_episode(probe, bundle: str, reference: ReferenceTrajectory, options: DeployedOptions, log_dir: Path
                ) -> tuple[EpisodeRecord, dict[str, str]]:
    """Start the graph, wait for the policy's first command, record until the reference's end + the hold time."""
    description = graph_description(bundle, reference.name, options)
    probe.start(reference.name)
    run_for_s = reference.duration_s + options.scoring.hold_s + 0.3
    with LaunchedGraph(description, log_dir=log_dir) as graph:
        deadline = time.monotonic() + options.startup_timeout_s
        while probe.record.start_t_s is None and time.monotonic() < deadline and not graph.failed():
            time.sleep(0.05)
        record = probe.snapshot()
        if record.start_t_s is None:
            failed = graph.failed()
            record.notes.append(f"nodes exited: {failed} (logs in {log_dir})" if failed else
                                f"no policy command within {options.startup_timeout_s:.0f} s")
            return record, dict(probe.diagnostic_messages)
        # Run on the probe's clock (sim time with use_sim_time): a slow simulation gets the time it needs.
        wall_deadline = time.monotonic() + 3.0 * run_for_s + 30.0
        while (probe.now_s() - record.start_t_s < run_for_s and time.monotonic() < wall_deadline
               and not graph.failed()):
            time.sleep(0.05)
        record = probe.snapshot()
        if graph.failed():
            record.notes.append(f"nodes exited during the episode: {graph.failed()}")
        note = intervention_note(dict(probe.diagnostics.get("safety_monitor", {})))
        if note is not None:
            record.notes.append(note)
        messages = dict(probe.diagnostic_messages)
    return record, messages


@contextmanager
def probe_session(name: str, launch_args: dict[str, str], log_dir: Path | None):
    """An :class:`~dexstack.nodes.episode_probe.EpisodeProbe` spinning in this process (on sim time when the graph
    runs ``use_sim_time:=true``) and the folder for the episodes' node logs (``log_dir``, or a temporary one removed
    at exit): yields (probe, log_root)."""
    import rclpy

    from dexstack.nodes.common import BackgroundSpin
    from dexstack.nodes.episode_probe import EpisodeProbe

    own_context = not rclpy.ok()
    context = None
    if own_context:  # a fresh context per call: the default one cannot be initialised again after a shutdown
        from rclpy.context import Context

        context = Context()
        rclpy.init(args=[], context=context)  # not the caller's argv: name:=value launch arguments would be remaps
    probe = EpisodeProbe(name, context=context)
    if launch_args.get("use_sim_time", "false").lower() == "true":
        from rclpy.parameter import Parameter

        probe.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
    spinner = BackgroundSpin(probe, name=name.replace("_", "-"))
    tmp = None
    try:
        if log_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix=f"dexstack_{name}_")
            log_dir = Path(tmp.name)
        yield probe, Path(log_dir)
    finally:
        spinner.close(shutdown_rclpy=own_context)
        if tmp is not None:
            tmp.cleanup()


def run_deployed(bundle: str, references: list[ReferenceTrajectory], options: DeployedOptions | None = None,
                 progress: Callable[[str], None] | None = None) -> list[DeployedResult]:
    """Each reference in a fresh launched graph; one scored result per reference (in order)."""
    options = options or DeployedOptions()
    results = []
    with probe_session("deployed_eval_probe", options.launch_args, options.log_dir) as (probe, log_root):
        for ref in references:
            mode = "gt" if options.gt_object_pose else "perception"
            record, messages = run_episode(probe, bundle, ref, options, log_root / f"{ref.name}_{mode}")
            result = score_episode(record, ref, options.scoring)
            for name in ("safety_monitor", "policy", "object_pose"):
                if name in messages:
                    result.notes.append(f"{name}: {messages[name][:200]}")
            results.append(result)
            if progress is not None:
                progress(f"{bundle} on {ref.name} ({mode}): success={result.success} "
                         f"max={result.max_position_error_m:.3f} m end={result.final_position_error_m:.3f} m "
                         f"held={result.held_after_end} coverage={result.object_pose_coverage:.2f}")
    return results
