"""Bad calibration input: a clear error naming the cause, and the existing calibration file untouched."""

import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from rich.console import Console  # noqa: E402

from dexstack.calibration.camera import load_camera_calibration, save_camera_calibration  # noqa: E402
from dexstack.calibration.handeye import HandEyeError  # noqa: E402
from dexstack.calibration.target import TargetDetector  # noqa: E402
from dexstack.cli.calibrate import parse_args, solve_and_write  # noqa: E402
from dexstack.paths import data_path  # noqa: E402
from tests.unit.test_calibration_handeye import CAMERA, make_samples  # noqa: E402

SIM_FILE = data_path("calibration", "sim_tabletop", "camera.yaml")


@pytest.fixture
def calibration_file(tmp_path) -> Path:
    path = tmp_path / "camera.yaml"
    path.write_bytes(SIM_FILE.read_bytes())
    return path


def _solve(path: Path, samples, rejected=None):
    args = parse_args(["--calibration", str(path), "--bootstrap", "0"])
    old = load_camera_calibration(str(path))
    return solve_and_write(args, samples, rejected or {}, old, CAMERA, path, Console(quiet=True), time.monotonic())


def _untouched(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["camera.yaml"]  # no backup, no temp file


def test_target_never_visible_names_the_cause_and_keeps_the_file(calibration_file):
    before = calibration_file.read_bytes()
    with pytest.raises(HandEyeError, match=r"target never usable in 12 views: target not visible \(12\)"):
        _solve(calibration_file, [], {"target not visible": 12})
    _untouched(calibration_file, before)


@pytest.mark.parametrize("kind, match", [("few", "too few samples: 3"), ("one_axis", "degenerate motion")])
def test_too_few_samples_and_degenerate_motions_keep_the_file(calibration_file, kind, match):
    before = calibration_file.read_bytes()
    samples, _, _ = make_samples("eye_to_hand", 3 if kind == "few" else 10, one_axis=kind == "one_axis")
    with pytest.raises(HandEyeError, match=match):
        _solve(calibration_file, samples)
    _untouched(calibration_file, before)


def test_a_good_solve_writes_the_file_and_keeps_a_dated_backup(calibration_file):
    before = calibration_file.read_bytes()
    samples, X, _ = make_samples("eye_to_hand", 10, seed=3)
    record = _solve(calibration_file, samples)
    backups = [p for p in calibration_file.parent.iterdir() if p.name.endswith(".bak")]
    assert len(backups) == 1 and backups[0].read_bytes() == before
    new = load_camera_calibration(str(calibration_file))
    assert np.linalg.norm(new.T_parent_camera[:3, 3] - X[:3, 3]) < 2e-3
    assert record["backup"] == str(backups[0])
    save_camera_calibration(new, calibration_file)  # a second write never overwrites the first backup
    assert len([p for p in calibration_file.parent.iterdir() if p.name.endswith(".bak")]) == 2


def test_a_wrong_board_size_is_reported_by_the_depth_check():
    """Render the sim's board, detect it believing the squares are 5 cm instead of 4 cm."""
    from dexstack.sim.camera import SimCamera
    from dexstack.sim.cell import SimCell

    cell = SimCell("tabletop_bumped_camera")
    q = cell.description.home()
    q[6] -= np.pi / 4  # board toward the camera
    cell.reset(q)
    camera = SimCamera(cell)
    image = camera.render()
    camera.close()
    depth_m = np.where(image.depth_mm > 0, image.depth_mm * 1e-3, np.nan)
    good = TargetDetector(cell.target).detect(image.color_rgb8, cell.camera.intrinsics, depth_m)
    assert good.ok, good.reason
    wrong = dataclasses.replace(cell.target, square_size_m=0.05, marker_size_m=0.0375)
    det = TargetDetector(wrong).detect(image.color_rgb8, cell.camera.intrinsics, depth_m)
    assert not det.ok and "wrong board size" in det.reason and "0.8" in det.reason
    blank = TargetDetector(cell.target).detect(np.full_like(image.color_rgb8, 128), cell.camera.intrinsics)
    assert not blank.ok and blank.reason == "target not visible"
