"""The repository root is one ament_python package: `colcon build` in a workspace installs nodes and data."""

import ast
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _setup_nodes() -> list[str]:
    """The keys of setup.py's NODES table (the one list of node executables)."""
    for statement in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", None) == "NODES":
            return list(ast.literal_eval(statement.value))
    raise AssertionError("setup.py has no NODES table")


def test_colcon_build_installs_every_node_and_the_data_folders(tmp_path):
    src = tmp_path / "ws" / "src" / "dexstack"
    src.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:  # the tracked tree, as a clone would have it
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    colcon = Path(sys.executable).parent / "colcon"
    result = subprocess.run([str(colcon), "build", "--base-paths", "src"], cwd=tmp_path / "ws",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    install = tmp_path / "ws" / "install" / "dexstack"
    for node in _setup_nodes():
        assert (install / "lib" / "dexstack" / node).is_file(), f"ros2 run dexstack {node} would not find it"
    share = install / "share" / "dexstack"
    assert (share / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "dexstack").is_file()
    for folder in ("launch", "config", "calibration", "policies"):
        tracked = {f for f in files if f.startswith(folder + "/")}
        installed = {str(p.relative_to(share)) for p in (share / folder).rglob("*") if p.is_file()}
        assert tracked <= installed, f"not installed: {sorted(tracked - installed)}"
    assert yaml.safe_load((share / "config" / "robots" / "panda_allegro.yaml").read_text())["name"] == "panda_allegro"
