"""The one camera model: projection against OpenCV, unprojection round trip, CameraInfo fields, file dicts."""

import cv2
import numpy as np
import pytest

from dexstack.camera_model import CameraModel

PLUMB = CameraModel(640, 480, 612.0, 610.0, 321.5, 238.25, "plumb_bob", (0.11, -0.05, 0.001, -0.002, 0.013))
FISHEYE = CameraModel(640, 480, 300.0, 300.0, 320.0, 240.0, "equidistant", (0.02, -0.01, 0.003, -0.001))


def _points(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack((rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.5, 1.5, n)))


def test_project_matches_opencv_with_distortion():
    p = _points()
    ours = PLUMB.project(p)
    cv, _ = cv2.projectPoints(p, np.zeros(3), np.zeros(3), PLUMB.K, np.array(PLUMB.D))
    np.testing.assert_allclose(ours, cv.reshape(-1, 2), atol=1e-6)
    fish, _ = cv2.fisheye.projectPoints(p.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), FISHEYE.K,
                                        np.array(FISHEYE.D))
    np.testing.assert_allclose(FISHEYE.project(p), fish.reshape(-1, 2), atol=1e-6)


@pytest.mark.parametrize("camera", [PLUMB, FISHEYE, CameraModel(640, 480, 615.0, 615.0, 319.5, 239.5)])
def test_unproject_inverts_project(camera):
    p = _points()
    back = camera.unproject(camera.project(p), p[:, 2])
    np.testing.assert_allclose(back, p, atol=1e-5)


def test_camera_info_fields_and_round_trip():
    f = PLUMB.camera_info_fields()
    assert f["k"] == [612.0, 0.0, 321.5, 0.0, 610.0, 238.25, 0.0, 0.0, 1.0]
    assert f["p"] == [612.0, 0.0, 321.5, 0.0, 0.0, 610.0, 238.25, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert f["distortion_model"] == "plumb_bob" and f["d"] == list(PLUMB.D)

    class Msg:  # duck-typed sensor_msgs/CameraInfo
        width, height, k, d, distortion_model = f["width"], f["height"], f["k"], f["d"], f["distortion_model"]

    assert CameraModel.from_camera_info(Msg) == PLUMB
    assert CameraModel.from_dict(PLUMB.to_dict()) == PLUMB


def test_bad_models_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="positive"):
        CameraModel(640, 480, -1.0, 600.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="takes 5 coefficients"):
        CameraModel(640, 480, 600.0, 600.0, 320.0, 240.0, "plumb_bob", (0.1, 0.2))
