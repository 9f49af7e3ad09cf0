"""The one error type of the cache layer that a user can cause or fix."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a state the user can fix (a bad .dockerignore pattern, an unusable
    cache root). `str(err)` is the one line shown to the user, never holding a secret.

    The `bottle` layer's errors derive from this one, so one handler at the top turns
    every user-caused failure into one line and a non-zero exit."""
