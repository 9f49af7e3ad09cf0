"""`doit <task>` inside a checkout: the same tasks as the `bottle` command."""

from bottle.tasks import *  # noqa: F403
from bottle.tasks import DOIT_CONFIG  # noqa: F401
