"""The camera rendered in a child process: the same image as in-process for the same state, a niced child, and
clear errors when it cannot render."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dexstack.sim import SimCell
from dexstack.sim.camera import SimCamera
from dexstack.sim.config import load_cell_config
from dexstack.sim.render_process import RenderProcess, RenderProcessError


@pytest.fixture(scope="module")
def cell():
    return SimCell(load_cell_config("tabletop"))


def test_child_renders_the_state_it_is_sent_like_the_in_process_camera(cell):
    cell.reset()
    cell.place_object((0.45, 0.08, 0.025, 0.0, 0.0, 0.3826834, 0.9238795))  # 45 deg yaw, off the config's pose
    cell.step(20)
    moved = cell.copy_render_state()
    cell.place_object((0.55, -0.10, 0.025, 0.0, 0.0, 0.0, 1.0))  # the parent's cell moves on: the child must
    cell.step(20)  # render the state it was given, not the cell's now
    local = SimCamera(cell)
    renderer = RenderProcess(cell.cell, camera="scene", nice=5)
    try:
        remote = renderer.render(moved)
        here = local.render(moved)
        assert remote.time_s == moved[0]
        np.testing.assert_array_equal(remote.depth_mm, here.depth_mm)
        np.testing.assert_array_equal(remote.color_rgb8, here.color_rgb8)
        now = renderer.render(cell.copy_render_state())
        assert np.count_nonzero(now.depth_mm != remote.depth_mm) > 100  # the cube is elsewhere in the other state
        with open(f"/proc/{renderer.pid}/stat") as f:
            niceness = int(f.read().rsplit(")", 1)[1].split()[16])
        assert niceness == os.nice(0) + 5
    finally:
        local.close()
        renderer.close()
    assert renderer._proc.poll() is not None  # closed: the child is gone


def test_a_camera_the_cell_lacks_is_refused_with_the_reason(cell):
    assert cell.operator_camera is None  # the tabletop cell has no operator camera
    with pytest.raises(RenderProcessError, match="no operator camera"):
        RenderProcess(cell.cell, camera="operator")
    with pytest.raises(ValueError, match="not one of"):
        RenderProcess(cell.cell, camera="wrist")


def test_a_dead_child_is_reported_not_waited_for(cell):
    renderer = RenderProcess(cell.cell, nice=0)
    try:
        renderer._proc.kill()
        renderer._proc.wait()
        with pytest.raises(RenderProcessError, match="exited|gone"):
            renderer.render(cell.copy_render_state())
    finally:
        renderer.close()


def test_a_child_that_cannot_render_is_a_clear_error(cell, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")  # the child's GL backend cannot load
    with pytest.raises(RenderProcessError, match="could not open|exited"):
        RenderProcess(cell.cell)


def test_the_child_leaves_when_its_parent_is_killed(tmp_path):
    """No orphan renderer: a parent killed with SIGKILL closes the pipe, and the child exits on its own."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from dexstack.sim.config import load_cell_config\n"
        "from dexstack.sim.render_process import RenderProcess\n"
        "r = RenderProcess(load_cell_config('tabletop'))\n"
        "print(r.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
