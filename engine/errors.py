"""Exceptions the engine raises for problems a user can fix (bad files, mismatched data).

They all derive from `MiaError` so the GUI and CLI can tell a user error, which they show as a
message, from a programming error, which they let surface as a traceback.
"""


class MiaError(Exception):
    """Base of every user-facing engine error; its message says what, where, what was expected."""


class CaptureError(MiaError, ValueError):
    """An HMC capture folder (see engine/io/) is missing, malformed or inconsistent."""


class MeshError(MiaError, ValueError):
    """A mesh file cannot be read or does not fit the model topology; ``info`` says what was found."""

    def __init__(self, message: str, info=None):
        super().__init__(message)
        self.info = info


class CheckpointError(MiaError, ValueError):
    """A model checkpoint is missing, corrupt, or made for another mesh topology."""


class ConfigError(MiaError, ValueError):
    """A configuration file or value is invalid."""


class NoMirrorError(ConfigError):
    """Test-time mirroring was asked of a model whose mesh topology has no known mirror map (only
    the face model's has one); the model itself is fine read without the mirror."""


class SourceError(MiaError):
    """A frame source cannot be opened or used as asked (bad spec, seeking a live feed, an unknown
    synthetic subject, ...)."""


class ExportError(MiaError, RuntimeError):
    """An ONNX export could not be written or does not reproduce the checkpoint within tolerance."""


class AvatarError(MiaError, ValueError):
    """A person-specific avatar (decoder D_i) is missing, corrupt, or does not fit its subject's data."""


class OutputError(MiaError, ValueError):
    """A bad output setting (host, port, weight source) or a network problem, with a message for the user."""
