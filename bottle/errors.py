"""The error every user-caused failure becomes: one line on stderr, non-zero exit."""

from __future__ import annotations

from cache.errors import UserError


class BottleError(UserError):
    """A failure the user can cause or fix (bad input, missing tool, registry down).

    `str(err)` is the one line shown to the user; it never holds a secret value.
    """


class ConfigError(BottleError):
    """A bad config key or value, named with where it came from."""
