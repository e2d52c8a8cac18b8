"""Errors a user can act on.

The command line prints these as one line of advice and exits with status 2,
instead of a Python traceback. Library callers can catch them like any other
``ValueError``.
"""


class UserError(ValueError):
    """Something about the input or the request that the user can fix."""
