"""`doit <task>` inside a checkout: the same tasks as the `bottle` command.

Agent arguments after `--` are taken from the command line verbatim (doit itself would
read `NAME=VALUE` items as its own variables)."""

import sys

from bottle import actions
from bottle.engine import doit_config
from bottle.tasks import *  # noqa: F403

actions.set_agent_args(sys.argv[1:])
DOIT_CONFIG = doit_config()
