"""Agent profiles as data: what to build, what it may reach, what it needs, where its state is.

A profile names a build context (a directory with a Dockerfile), its default egress
allow-list (see `bottle.egress`), the host variables it takes as secrets, the paths in
the bottle that persist per project, and the command that starts the agent.

`claude` is the real Claude Code; `example` is the bundled offline stand-in.
The egress proxy's assets live beside them (`proxy/`), built on the same base.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from bottle.errors import BottleError
from cache.record import dataclass, field
from cache.store import Store

HERE = Path(__file__).resolve().parent
CA_FILE = "ca-certificates.crt"
CLAUDE_HOME = "/home/node"


@dataclass(frozen=True)
class Profile:
    name: str
    source: Callable[[Store], Path]  # the Dockerfile's directory (as shipped)
    command: str
    network: str = "none"  # the default network: none, host or egress
    egress: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    state: tuple[str, ...] = ()  # absolute paths in the bottle, kept per project
    env: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    takes_ca: bool = False  # the context must hold CA_FILE (empty when none is configured)
    build_network: str | None = None  # docker build --network (npm must be reachable)
    takes_base: bool = False  # its Dockerfile builds FROM $BASE (base = "local" sets it)
    # Where each default egress host comes from, and hosts a user may want to add.
    egress_sources: Mapping[str, str] = field(default_factory=dict)
    optional_egress: Mapping[str, str] = field(default_factory=dict)


def _shipped(name: str) -> Callable[[Store], Path]:
    return lambda store: HERE / name


def _example_source(store: Store) -> Path:
    from bottle.example import example_context

    return example_context(store)


_NETWORK_CONFIG = "code.claude.com/docs/en/network-config (Network access requirements)"
_OLD_PROXY_DOC = "docs.anthropic.com/en/docs/claude-code/corporate-proxy (2025 edition)"
_DEVCONTAINER = "github.com/anthropics/claude-code .devcontainer/init-firewall.sh"

CLAUDE = Profile(
    name="claude",
    source=_shipped("claude"),
    command="claude",
    network="egress",
    egress=("api.anthropic.com", "claude.ai", "platform.claude.com"),
    secrets=("ANTHROPIC_API_KEY",),
    # With CLAUDE_CONFIG_DIR set, ~/.claude.json lives inside it (checked with 2.1.330),
    # so this one directory holds the login, settings and sessions.
    state=(f"{CLAUDE_HOME}/.claude",),
    env={
        "CLAUDE_CONFIG_DIR": f"{CLAUDE_HOME}/.claude",
        # Telemetry, error reports and update checks: hosts outside the allow-list.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    },
    build_args={"CLAUDE_CODE_VERSION": "2.1.330"},
    takes_ca=True,
    build_network="host",
    takes_base=True,
    egress_sources={
        "api.anthropic.com": f"Claude API requests: {_NETWORK_CONFIG}; {_DEVCONTAINER}",
        "claude.ai": f"claude.ai account login: {_NETWORK_CONFIG}",
        "platform.claude.com": f"Anthropic Console account login: {_NETWORK_CONFIG}",
    },
    optional_egress={
        "statsig.anthropic.com": f"telemetry (off by default here): {_OLD_PROXY_DOC}",
        "sentry.io": f"error reporting (off by default here): {_OLD_PROXY_DOC}; {_DEVCONTAINER}",
        "downloads.claude.ai": f"native installer, auto-updater, plugins: {_NETWORK_CONFIG}",
        "raw.githubusercontent.com": f"release notes, plugin marketplace: {_NETWORK_CONFIG}",
        "registry.npmjs.org": f"npm packages, MCP servers via npx: {_DEVCONTAINER}",
    },
)

EXAMPLE = Profile(name="example", source=_example_source, command="claude")

PROFILES: dict[str, Profile] = {p.name: p for p in (CLAUDE, EXAMPLE)}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise BottleError(f"unknown agent profile {name!r} (known: {known})") from None


def proxy_source() -> Path:
    """The egress proxy's Dockerfile directory (squid; takes CA_FILE like claude)."""
    return HERE / "proxy"


def _ca_bytes(ca_certs: Path | None) -> bytes:
    if ca_certs is None:
        return b""
    try:
        return ca_certs.read_bytes()
    except OSError as err:
        raise BottleError(f"ca_certs: cannot read {ca_certs}: {err.strerror}") from None


def context_with_ca(source: Path, ca_certs: Path | None, store: Store) -> Path:
    """`source`'s files plus CA_FILE (the bundle, or empty), as a build context dir.

    Made once per content in the cache (checked on every use), so a CA change makes a new
    context (and so a new context digest: a rebuild)."""
    files = {p.name: (p.read_bytes(), p.stat().st_mode & 0o777 | 0o644)
             for p in sorted(source.iterdir()) if p.is_file() and p.name != "__init__.py"}
    files[CA_FILE] = (_ca_bytes(ca_certs), 0o644)
    return store.assembled(source.name, files)


def build_context(p: Profile, store: Store, *, ca_certs: Path | None = None) -> Path:
    """The directory to build the profile from (with CA_FILE when the profile takes one)."""
    source = p.source(store)
    return context_with_ca(source, ca_certs, store) if p.takes_ca else source
