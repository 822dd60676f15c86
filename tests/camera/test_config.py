"""Stream profile parsing and config validation."""

import pytest

from dexstack.camera import CameraConfig, parse_profile, validate_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [("640x480x30", (640, 480, 30)), ("848x480x90", (848, 480, 90)), (" 1280x720x15 ", (1280, 720, 15))],
)
def test_parse_profile_accepts_width_height_fps(text, expected):
    assert parse_profile(text) == expected


@pytest.mark.parametrize(
    "text", ["640x480", "640x480x", "axbxc", "640*480*30", "0x480x30", "640x480x0", "", "640x480x30x2"]
)
def test_parse_profile_rejects_malformed_strings_naming_them(text):
    with pytest.raises(ValueError, match="invalid stream profile") as info:
        parse_profile(text)
    assert repr(text) in str(info.value)


def test_default_config_is_valid():
    assert validate_config(CameraConfig()) == []


def test_validate_reports_every_problem():
    errors = validate_config(CameraConfig(source="usb", color_profile="640x480", depth_profile="big"))
    assert len(errors) == 3
    assert any("source 'usb'" in e for e in errors)
    assert any(e.startswith("color_profile") and "'640x480'" in e for e in errors)
    assert any(e.startswith("depth_profile") and "'big'" in e for e in errors)


def test_playback_needs_a_path_and_cannot_record():
    errors = validate_config(CameraConfig(source="playback", record_path="out.db3"))
    assert any("playback_path" in e for e in errors)
    assert any("record_path cannot be used" in e for e in errors)


def test_record_path_must_be_db3():
    assert any(".db3" in e for e in validate_config(CameraConfig(record_path="capture.bag")))
    assert validate_config(CameraConfig(source="software", record_path="capture.db3")) == []
