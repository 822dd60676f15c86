"""Exceptions raised by the camera sources."""


class CameraError(RuntimeError):
    """The camera cannot be opened or read; the message says what to check."""


class PlaybackEnded(CameraError):
    """A non-repeating playback has delivered its last frame."""
