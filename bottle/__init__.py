"""bot-bottle: run AI coding agents in bottles (Docker containers or smolvm microVMs)."""

from __future__ import annotations

__version__ = "0.1.0"
