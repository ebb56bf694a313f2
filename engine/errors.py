"""Exceptions the engine raises for problems a user can fix (bad files, mismatched data).

They all derive from `MiaError` so the GUI and CLI can tell a user error, which they show as a
message, from a programming error, which they let surface as a traceback.
"""


class MiaError(Exception):
    """Base of every user-facing engine error; its message says what, where, what was expected."""


class CaptureError(MiaError, ValueError):
    """An HMC capture folder (see engine/capture.py) is missing, malformed or inconsistent."""
