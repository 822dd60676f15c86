"""Every launch file is runnable: executables exist, parameter files exist, and every parameter is declared."""

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from dexstack.launch.runner import node_command, node_module
from dexstack.launch.xml import LaunchError, parse_launch_file
from dexstack.paths import data_path

LAUNCH_FILES = sorted(Path(data_path("launch")).glob("*.launch.xml"))


BUILTIN_PARAMS = {"use_sim_time"}  # declared by rclpy in every node


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH_FILES} >= {"sim_cell.launch.xml", "sim_demo.launch.xml"}


def _variants(path: Path):
    """The launch file as parsed with its defaults, and with every false-by-default switch turned on, so nodes
    behind ``if="$(var ...)"`` are checked too."""
    launch = parse_launch_file(str(path))
    yield launch
    switches = {name: "true" for name, value in launch.args.items() if value == "false"}
    if switches:
        yield parse_launch_file(str(path), switches)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_existing_executables_files_and_parameters(path):
    for launch in _variants(path):
        _check_launch(path, launch)


def _check_launch(path: Path, launch) -> None:
    assert launch.nodes, "a launch file with no nodes"
    if path.name.startswith("sim"):
        assert launch.env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "sim launch files force localhost DDS"
    for node in launch.nodes:
        module = importlib.import_module(node_module(node.executable))
        declared = {f.name for f in dataclasses.fields(module.Params)} | BUILTIN_PARAMS
        node_command(node)  # raises if a parameter file is missing
        for param_file in node.param_files:
            doc = yaml.safe_load(param_file.read_text())
            section = {**doc.get("/**", {}), **doc.get(node.name, {})}.get("ros__parameters", {})
            unknown = set(section) - declared
            assert not unknown, f"{param_file.name} sets undeclared parameters of {node.name}: {sorted(unknown)}"
        unknown = set(node.params) - declared
        assert not unknown, f"{path.name} sets undeclared parameters of {node.name}: {sorted(unknown)}"


ROBOT_SIDE = ("teleop", "record", "policy")
COMMAND_SOURCES = {"teleop", "policy", "scripted_motion"}
SENSORS = {"camera", "sim_cell"}  # the robot's camera is published by sim_cell in the simulated twin


@pytest.mark.parametrize("name", ROBOT_SIDE)
def test_robot_side_launch_files_mirror_their_sim_twins_without_sim_nodes(name):
    robot = parse_launch_file(name, {"record": "true"} if name == "teleop" else None)
    twin = parse_launch_file(f"sim_{name}")
    executables = {n.executable for n in robot.nodes}
    assert not {e for e in executables if e.startswith("sim_")}, f"{name}: simulated nodes on the robot"
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in robot.env  # the workstation's DDS setup is the user's choice
    assert "camera" in executables and "safety_monitor" in executables
    twin_executables = {n.executable for n in twin.nodes}
    # the same command source(s) through the same safety monitor; the robot's drivers replace sim_cell
    assert executables & COMMAND_SOURCES == twin_executables & COMMAND_SOURCES
    assert "sim_cell" in twin_executables
    robot_only = executables - twin_executables - SENSORS
    assert robot_only <= {"hand_pose", "object_pose", "viz", "recorder"}, robot_only  # perception for sim_hand/truth
    # The drivers' command topics are never named in a robot-side file: they come from the robot profile.
    text = robot.path.read_text()
    assert "/arm_controller" not in text and "/hand_controller" not in text


def test_launch_conditions_if_and_unless(tmp_path):
    path = tmp_path / "cond.launch.xml"
    path.write_text('<launch><arg name="on" default="false"/>'
                    '<node pkg="dexstack" exec="camera" name="a" if="$(var on)"/>'
                    '<node pkg="dexstack" exec="camera" name="b" unless="$(var on)"/></launch>')
    assert [n.name for n in parse_launch_file(str(path)).nodes] == ["b"]
    assert [n.name for n in parse_launch_file(str(path), {"on": "true"}).nodes] == ["a"]
    with pytest.raises(LaunchError, match="not true/false"):
        parse_launch_file(str(path), {"on": "maybe"})


def test_every_node_in_a_parameter_file_is_launched_somewhere():
    launched = {n.name for p in LAUNCH_FILES for n in parse_launch_file(str(p)).nodes}
    for param_file in Path(data_path("config")).glob("*.yaml"):
        doc = yaml.safe_load(param_file.read_text()) or {}
        for key, value in doc.items():
            if isinstance(value, dict) and "ros__parameters" in value and key != "/**":
                assert key in launched, f"{param_file.name} configures '{key}', which no launch file starts"


def test_unknown_executables_and_arguments_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.launch.xml"
    bad.write_text('<launch><node pkg="dexstack" exec="no_such_node" name="x"/></launch>')
    with pytest.raises(LaunchError, match="not a dexstack executable"):
        node_command(parse_launch_file(str(bad)).nodes[0])
    with pytest.raises(LaunchError, match="unknown launch arguments"):
        parse_launch_file("sim_cell", {"nonsense": "1"})
    with pytest.raises(LaunchError, match="not found"):
        parse_launch_file("no_such_launch")


def test_single_parameters_keep_their_yaml_types_and_strings_with_colons(tmp_path):
    from dexstack.launch.runner import param_value

    assert param_value("3.0") == 3.0 and param_value("true") is True and param_value("[1, 2]") == [1, 2]
    assert param_value("scripted demo: lean over the cube") == "scripted demo: lean over the cube"
    launch = parse_launch_file("sim_demo", {"output_dir": "out: here"})
    recorder = next(n for n in launch.nodes if n.name == "recorder")
    cmd = node_command(recorder, param_dir=tmp_path)
    written = yaml.safe_load((tmp_path / "recorder.params.yaml").read_text())["recorder"]["ros__parameters"]
    assert written["output_dir"] == "out: here" and written["task"].startswith("scripted demo:")
    assert str(tmp_path / "recorder.params.yaml") in cmd
