"""The doit tasks, declared: what each runs, its options, and what it depends on.

The bodies live in `bottle.actions`; the options come from the config keys
(`bottle.config.KEYS`); importing this module touches no file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from bottle import actions
from bottle.config import options_for
from bottle.lookup import Lookup

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DOIT_CONFIG: dict[str, Any] = {}  # filled by the loader when a command runs (no I/O here)



def summary(doc: str | None) -> str:
    """A task's one-line summary: the first sentence of its docstring's first paragraph
    (a period ends a sentence only before a space, and not in "e.g." or "i.e.")."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    return re.split(r"(?<!\be\.g)(?<!\bi\.e)\.(?:\s|$)", text, maxsplit=1)[0]


def _task(creator: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Give doit the summary as the task's `doc` (doit would take the docstring's first
    line, which may stop mid-sentence)."""

    @functools.wraps(creator)
    def declare() -> dict[str, Any]:
        return {**creator(), "doc": summary(creator.__doc__)}

    return declare


_JSON = {"name": "json_out", "long": "json", "type": bool, "default": False,
         "help": "print JSON"}


@_task
def task_build() -> dict[str, Any]:
    """Ensure the agent image: `docker build` only when the context digest changed."""
    return {"actions": [actions.build], "uptodate": [Lookup(actions.decide_build)],
            "verbosity": 2}


@_task
def task_pack() -> dict[str, Any]:
    """Ensure the agent's `.smolmachine` (prints its path): repack only when the image
    changed."""
    return {"actions": [actions.pack], "uptodate": [Lookup(actions.decide_pack)],
            "verbosity": 2}


@_task
def task_launch() -> dict[str, Any]:
    """Build or reuse the agent image/artifact, run the agent in a bottle, remove it.

    Arguments after `--` go to the agent, verbatim: `bottle launch -- --print hello`.
    """
    return {"actions": [actions.launch], "params": options_for("launch"),
            "pos_arg": "agent_args", "uptodate": [False], "verbosity": 2}


@_task
def task_prepull() -> dict[str, Any]:
    """Pull a compose deployment's missing images before it deploys (present ones: no
    network). Images come from compose's own rendered config, or from --image. A failed
    pull stops with one line and exit 1."""
    params = [*options_for("prepull"),
              {"name": "quiet", "short": "q", "long": "quiet", "type": bool,
               "default": False, "help": "print nothing but errors"}, _JSON]
    return {"actions": [actions.prepull], "params": params, "uptodate": [False],
            "verbosity": 2}


@_task
def task_base() -> dict[str, Any]:
    """Make (once) the offline base image from Debian packages, for `base = "local"` where
    the official node image cannot be pulled; prints its tag."""
    return {"actions": [actions.base], "uptodate": [Lookup(actions.decide_base)],
            "verbosity": 2}


@_task
def task_egress() -> dict[str, Any]:
    """Show what the last egress-proxied launch here reached and was refused; print (or
    write, for review) its destinations as an allow-list."""
    return {"actions": [actions.egress], "uptodate": [False], "verbosity": 2,
            "params": [_JSON, {"name": "write", "long": "write", "type": str, "default": "",
                               "help": "write the allow-list to this file, for review"}]}


@_task
def task_forget_state() -> dict[str, Any]:
    """Remove the agent state (e.g. Claude's login) kept for this project."""
    return {"actions": [actions.forget_state], "uptodate": [False], "verbosity": 2}


@_task
def task_sweep() -> dict[str, Any]:
    """Remove bottles (containers, networks, microVMs) left by launches that were killed."""
    return {"actions": [actions.sweep], "uptodate": [False], "verbosity": 2}


@_task
def task_cache_list() -> dict[str, Any]:
    """List cache entries (kind, key, size, last used, source image) and each area's size."""
    return {"actions": [actions.cache_list], "params": [_JSON], "uptodate": [False],
            "verbosity": 2}


@_task
def task_cache_gc() -> dict[str, Any]:
    """Drop what is over the age budget, then the least recently used over the size
    budget, in every area of the cache; remove images of ours nothing refers to."""
    return {
        "actions": [actions.cache_gc],
        "params": [
            {"name": "max_size", "long": "max-size", "type": str, "default": "20G",
             "help": "keep at most this much (e.g. 500M, 20G; empty: no limit)"},
            {"name": "max_age", "long": "max-age", "type": str, "default": "30d",
             "help": "drop what was unused this long (e.g. 12h, 30d; empty: no limit)"},
        ],
        "uptodate": [False], "verbosity": 2,
    }


@_task
def task_cache_push() -> dict[str, Any]:
    """Push this project's image (and .smolmachine, when packed) to the shared cache."""
    return {"actions": [actions.cache_push], "params": [_JSON], "uptodate": [False],
            "verbosity": 2}


@_task
def task_cache_pull() -> dict[str, Any]:
    """Fetch this project's image (or .smolmachine) from the shared cache, without
    launching (warm a laptop before a flight)."""
    return {"actions": [actions.cache_pull], "uptodate": [False], "verbosity": 2,
            "params": [_JSON, {"name": "smolmachine", "long": "smolmachine", "type": bool,
                               "default": False, "help": "fetch the .smolmachine, not the "
                               "image"}]}


@_task
def task_cache_verify() -> dict[str, Any]:
    """Re-hash every cache entry and check every record; remove (and name) damaged ones."""
    return {"actions": [actions.cache_verify], "uptodate": [False], "verbosity": 2}


__all__ = ["DOIT_CONFIG",
           *[n for n in list(globals()) if n.startswith("task_")]]
