import numpy as np
import pytest

from dexstack.calibration import CalibrationError, load_camera_calibration
from dexstack.paths import ResourceNotFoundError, resolve_uri
from dexstack.sim.config import CellConfigError, load_cell_config
from dexstack.transforms import look_at, matrix_to_quat_xyzw, quat_xyzw_to_matrix


def test_calibration_round_trips_through_yaml(tmp_path):
    cal = load_camera_calibration("sim_tabletop")
    path = tmp_path / "camera.yaml"
    path.write_text(cal.to_yaml())
    again = load_camera_calibration(str(path))
    np.testing.assert_allclose(again.T_parent_camera, cal.T_parent_camera, atol=1e-9)
    assert again.intrinsics == cal.intrinsics


def test_sim_calibration_looks_at_the_table():
    cal = load_camera_calibration("sim_tabletop")
    optical_axis = cal.T_parent_camera[:3, 2]
    assert optical_axis[2] < -0.3  # looking down
    R = cal.T_parent_camera[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-6)


@pytest.mark.parametrize("text,reason", [
    ("version: 2\n", "unsupported version"),
    ("version: 1\ncamera_name: c\n", "T_parent_camera"),
])
def test_malformed_calibration_is_reported(tmp_path, text, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=reason):
        load_camera_calibration(str(path))


def test_missing_files_are_reported_not_tracebacks():
    with pytest.raises(CalibrationError, match="not found"):
        load_camera_calibration("no_such_cell")
    with pytest.raises(CellConfigError, match="not found"):
        load_cell_config("no_such_cell")
    with pytest.raises(ResourceNotFoundError, match="package 'no_such_pkg' not found"):
        resolve_uri("package://no_such_pkg/x.urdf")


def test_quaternion_and_look_at_conventions():
    T = look_at([1, 0, 1], [0, 0, 0])
    np.testing.assert_allclose(T[:3, 2], np.array([-1, 0, -1]) / np.sqrt(2), atol=1e-12)  # z forward
    assert T[2, 1] < 0  # image y (down) points down in the world
    R = quat_xyzw_to_matrix(matrix_to_quat_xyzw(T[:3, :3]))
    np.testing.assert_allclose(R, T[:3, :3], atol=1e-12)
