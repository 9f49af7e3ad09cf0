"""Agent profiles: what an agent needs besides its image (its command, network, secrets
and state). `example` is the offline stand-in most tests use; `claude` is Claude Code.

A user's own Dockerfile (`context`/`dockerfile`) still names a profile for the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AGENTS_DIR = Path(__file__).resolve().parent / "agents"


@dataclass(frozen=True)
class Profile:
    name: str
    command: str
    network: str  # default network: none, host or egress
    egress: tuple[str, ...]  # default allow-list for network = "egress"
    secrets: tuple[str, ...]  # host variables passed by reference, when set
    state: tuple[str, ...]  # paths under the agent's home kept per project between launches


PROFILES: dict[str, Profile] = {
    "example": Profile("example", command="claude", network="none", egress=(), secrets=(),
                       state=()),
    "claude": Profile(
        "claude", command="claude", network="egress",
        # Claude Code's API, its login and its update/telemetry endpoints.
        egress=("api.anthropic.com", "statsig.anthropic.com", "console.anthropic.com",
                "claude.ai", "sentry.io", "*.sentry.io"),
        secrets=("ANTHROPIC_API_KEY",), state=(".claude", ".claude.json"),
    ),
}


def claude_context() -> Path:
    """The shipped Claude Code build context (Dockerfile with a pinned version)."""
    return AGENTS_DIR / "claude"
