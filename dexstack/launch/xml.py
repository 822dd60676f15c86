"""Parse ROS 2 launch XML (the subset this repository uses) into plain data."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from dexstack.paths import PACKAGE_NAME, data_path, share_dir


class LaunchError(ValueError):
    """A launch file uses something this runner does not understand, or is inconsistent."""


@dataclass
class NodeAction:
    package: str
    executable: str
    name: str
    param_files: list[Path] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # name -> value as written (YAML scalar)
    remaps: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class LaunchDescription:
    path: Path
    args: dict[str, str]
    env: dict[str, str]
    nodes: list[NodeAction]


_SUBST = re.compile(r"\$\((\S+)\s*([^)]*)\)")
KNOWN_ELEMENTS = {"launch", "arg", "let", "set_env", "node", "param", "remap"}


def _substitute(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        kind, argument = match.group(1), match.group(2).strip()
        if kind == "var":
            if argument not in variables:
                raise LaunchError(f"$(var {argument}) is not a declared argument")
            return variables[argument]
        if kind == "find-pkg-share":
            if argument != PACKAGE_NAME:
                raise LaunchError(f"$(find-pkg-share {argument}): only {PACKAGE_NAME} can be resolved here")
            return str(share_dir())
        raise LaunchError(f"unsupported substitution $({kind} ...)")

    return _SUBST.sub(replace, text)


def launch_file(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = data_path("launch", f"{name_or_path}.launch.xml")
    elif not path.is_absolute() and not path.exists():
        path = data_path("launch", name_or_path)
    if not path.is_file():
        raise LaunchError(f"launch file '{name_or_path}' not found (looked for {path})")
    return path


def _truthy(value: str, path: Path) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise LaunchError(f"{path}: condition '{value}' is not true/false")
    return lowered in ("true", "1")


def _condition(attr: dict[str, str], path: Path) -> bool:
    """``if``/``unless`` attributes as ros2 launch evaluates them (after substitution)."""
    keep = True
    if "if" in attr:
        keep = _truthy(attr.pop("if"), path)
    if "unless" in attr:
        keep = keep and not _truthy(attr.pop("unless"), path)
    return keep


def parse_launch_file(name_or_path: str, arguments: dict[str, str] | None = None) -> LaunchDescription:
    path = launch_file(name_or_path)
    root = ET.parse(path).getroot()
    if root.tag != "launch":
        raise LaunchError(f"{path}: root element is <{root.tag}>, expected <launch>")
    variables: dict[str, str] = {}
    given = dict(arguments or {})
    env: dict[str, str] = {}
    nodes: list[NodeAction] = []
    for element in root.iter():
        if element.tag not in KNOWN_ELEMENTS:
            raise LaunchError(f"{path}: <{element.tag}> is not supported by this runner")
    for element in root:
        attr = {k: _substitute(v, variables) for k, v in element.attrib.items()}
        if not _condition(attr, path):
            continue
        if element.tag == "arg":
            name = attr["name"]
            if name in given:
                variables[name] = given.pop(name)
            elif "default" in attr:
                variables[name] = attr["default"]
            else:
                raise LaunchError(f"{path}: argument '{name}' has no default and was not given")
        elif element.tag == "let":
            variables[attr["name"]] = attr["value"]
        elif element.tag == "set_env":
            env[attr["name"]] = attr["value"]
        elif element.tag == "node":
            node = NodeAction(package=attr["pkg"], executable=attr["exec"], name=attr.get("name", attr["exec"]))
            for child in element:
                c = {k: _substitute(v, variables) for k, v in child.attrib.items()}
                if child.tag == "param" and "from" in c:
                    node.param_files.append(Path(c["from"]))
                elif child.tag == "param":
                    node.params[c["name"]] = c["value"]
                elif child.tag == "remap":
                    node.remaps.append((c["from"], c["to"]))
                else:
                    raise LaunchError(f"{path}: <{child.tag}> inside <node> is not supported")
            nodes.append(node)
        else:
            raise LaunchError(f"{path}: <{element.tag}> at top level is not supported")
    if given:
        raise LaunchError(f"{path}: unknown launch arguments {sorted(given)}")
    return LaunchDescription(path=path, args=variables, env=env, nodes=nodes)
