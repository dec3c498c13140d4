"""Errors of the command line."""


class UsageError(Exception):
    """Bad input on the command line (unknown experiment or key, wrong type, unreachable address, an
    output folder holding a different run): printed as one line, exit code 2, no traceback."""
