"""The one exception type for user mistakes: the CLI prints its message on one line, no traceback."""


class CanvasError(Exception):
    """A problem the user can fix (bad path, bad flag, malformed file). The message says how."""
