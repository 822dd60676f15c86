"""The README and docs/ cite only what exists: console scripts, launch files, CLI flags, relative links.

Every shell command in a ```bash block of README.md and docs/*.md is parsed; a `dexstack-*` script must be a console
script of setup.py, `dexstack-launch X` / `ros2 launch dexstack X` a file in launch/, `ros2 run dexstack X` a node,
and every `--flag` given to a dexstack CLI must appear in that CLI's own `--help` (run in subprocesses, in parallel).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE_LAUNCH = re.compile(r"(?:dexstack-launch|ros2 launch dexstack) ([a-z][\w.]*)")  # X, <name>: placeholders
INLINE_SCRIPT = re.compile(r"`(dexstack-[a-z0-9-]+)")
SEPARATORS = {"&&", "||", ";", "|", "<", ">"}


def console_scripts() -> dict[str, str]:
    """name -> module of every console script in setup.py (NODES and TOOLS tables)."""
    text = (ROOT / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+)": "([\w.]+):main"', text))


def launch_name(arg: str) -> str:
    return arg.removesuffix(".launch.xml")


@dataclass
class Cli:
    """One dexstack CLI invocation whose flags are checked against its --help."""

    argv_prefix: list[str]  # the interpreter command that runs the CLI
    flags: set[str] = field(default_factory=set)
    subcommands: set[str] = field(default_factory=set)


def commands(text: str) -> list[list[str]]:
    """Shell commands (token lists) of the ```bash blocks in ``text``; comments, continuations and pipes handled."""
    out: list[list[str]] = []
    for block in BASH_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            current: list[str] = []
            for token in [*tokens, ";"]:
                if token in SEPARATORS:
                    if current:
                        out.append(current)
                    current = []
                else:
                    current.append(token)
    return out


def check_text(text: str, doc: Path, scripts: dict[str, str], clis: dict[str, Cli]) -> list[str]:
    """Problems found in one document; the CLIs whose flags need checking are collected into ``clis``."""
    problems = []
    nodes = {name for name in scripts if not name.startswith("dexstack-")}

    def launch_exists(name: str) -> None:
        if not (ROOT / "launch" / f"{launch_name(name)}.launch.xml").is_file():
            problems.append(f"{doc.name}: launch file {name!r} is not in launch/")

    for match in INLINE_LAUNCH.finditer(text):
        launch_exists(match.group(1))
    for name in INLINE_SCRIPT.findall(text):
        if name not in scripts:
            problems.append(f"{doc.name}: {name!r} is not a console script in setup.py")
    for argv in commands(text):
        head = argv[0]
        if head.startswith("dexstack-"):
            if head not in scripts:
                problems.append(f"{doc.name}: {head!r} is not a console script in setup.py")
                continue
            if head == "dexstack-launch":
                if len(argv) < 2:
                    problems.append(f"{doc.name}: dexstack-launch without a launch file")
                else:
                    launch_exists(argv[1])
                continue
            code = f"import sys; sys.argv[0] = {head!r}; from {scripts[head]} import main; sys.exit(main())"
            cli = clis.setdefault(head, Cli([sys.executable, "-c", code]))
        elif head in ("python", "python3") or head.endswith("/python"):
            if argv[1:2] != ["-m"] or len(argv) < 3 or not argv[2].startswith("dexstack"):
                continue
            module = argv[2]
            if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
                problems.append(f"{doc.name}: module {module!r} does not exist")
                continue
            cli = clis.setdefault(module, Cli([sys.executable, "-m", module]))
            argv = argv[2:]
        elif head == "ros2" and len(argv) >= 4 and argv[2] == "dexstack":
            if argv[1] == "launch":
                launch_exists(argv[3])
            elif argv[1] == "run" and argv[3] not in nodes:
                problems.append(f"{doc.name}: ros2 run dexstack {argv[3]!r}: no such node in setup.py")
            continue
        elif head.startswith("./scripts/"):
            if not (ROOT / head).is_file():
                problems.append(f"{doc.name}: {head} does not exist")
            continue
        else:
            continue
        cli.flags.update(token.split("=", 1)[0] for token in argv[1:] if token.startswith("--"))
        if len(argv) > 1 and re.fullmatch(r"[a-z_]+", argv[1]):
            cli.subcommands.add(argv[1])
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            problems.append(f"{doc.name}: link {target!r} points to a missing file")
    return problems


def help_texts(clis: dict[str, Cli]) -> dict[str, str]:
    """Each CLI's --help (plus each cited subcommand's), the processes run in parallel."""
    runs: list[tuple[str, subprocess.Popen]] = []
    for name, cli in clis.items():
        if not cli.flags:
            continue  # nothing to check, and a CLI without argparse would run instead of printing help
        for sub in [[], *([s] for s in sorted(cli.subcommands))]:
            proc = subprocess.Popen([*cli.argv_prefix, *sub, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            runs.append((name, proc))
    texts: dict[str, str] = {name: "" for name in clis}
    for name, proc in runs:
        stdout, _ = proc.communicate(timeout=60)
        texts[name] += stdout
    return texts


def flag_problems(clis: dict[str, Cli]) -> list[str]:
    texts = help_texts(clis)
    problems = []
    for name, cli in clis.items():
        if not cli.flags:
            continue
        known = set(re.findall(r"--[\w-]+", texts[name]))
        if not known:
            problems.append(f"{name} --help printed no options: {texts[name][-300:]!r}")
        problems += [f"{name}: flag {flag} is not in its --help" for flag in sorted(cli.flags - known)]
    return problems


def test_docs_cite_existing_scripts_launch_files_flags_and_links():
    scripts = console_scripts()
    assert "dexstack-launch" in scripts and "safety_monitor" in scripts, "setup.py's tables were not parsed"
    clis: dict[str, Cli] = {}
    problems = []
    for doc in DOCS:
        problems += check_text(doc.read_text(), doc, scripts, clis)
    # The guides cite these CLIs with flags: if parsing lost them, the flag check would pass vacuously.
    assert {"dexstack-train", "dexstack-calibrate", "dexstack.record.export"} <= {n for n, c in clis.items() if c.flags}
    problems += flag_problems(clis)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("```bash\ndexstack-nonexistent --x\n```", "not a console script"),
        ("```bash\ndexstack-launch no_such_graph  # comment\n```", "launch file 'no_such_graph'"),
        ("```bash\nros2 launch dexstack no_such.launch.xml\n```", "launch file 'no_such.launch.xml'"),
        ("```bash\nros2 run dexstack no_such_node\n```", "no such node"),
        ("see [x](docs/missing.md#part)", "missing file"),
        ("run `dexstack-launch nothing_here` to", "launch file 'nothing_here'"),
    ],
)
def test_checker_reports_what_does_not_exist(snippet, expected):
    problems = check_text(snippet, ROOT / "README.md", console_scripts(), {})
    assert any(expected in p for p in problems), problems


def test_checker_reports_a_flag_missing_from_help():
    clis: dict[str, Cli] = {}
    text = "```bash\ndexstack-calibrate --manual --no-such-flag=3 && echo done\n```"
    assert check_text(text, ROOT / "README.md", console_scripts(), clis) == []
    assert clis["dexstack-calibrate"].flags == {"--manual", "--no-such-flag"}
    # A stand-in for the CLI's --help keeps this test fast; the real ones run in the test above.
    clis["dexstack-calibrate"].argv_prefix = [sys.executable, "-c", "print('usage: x [--manual] [--output OUT]')"]
    assert flag_problems(clis) == ["dexstack-calibrate: flag --no-such-flag is not in its --help"]
