"""Fault-injected and hostile targets for the suite's own tests (conformance/CONTRACT.md).

- ``breaking_proxy(upstream_base_url, breaks)``: a real proxy in front of a good target that breaks
  the named clauses (``BREAKS``), or exercises legal oddities the suite must accept (``LEGAL_VARIANTS``).
- ``hostile_server(kind)``: raw-socket servers that misbehave below HTTP (``KINDS``).
- ``ssrf_unsafe_target()``: the reference target with its private-address guard switched off.
"""

from __future__ import annotations

from collections.abc import Sequence

from eyechart.target.launch import RunningTarget, start_target
from faulty_targets.breaks import BREAKS, LEGAL_VARIANTS
from faulty_targets.hostile import KINDS, hostile_server
from faulty_targets.proxy import Break, Exchange, Reply, StreamHead, breaking_proxy, serve_app


def ssrf_unsafe_target(args: Sequence[str] = ("--latency", "zero")) -> RunningTarget:
    """The reference target started with ``--allow-private-urls``: it fetches (and follows redirects to)
    loopback and private addresses, so the security checks must catch it. Use as a context manager."""
    return start_target(args=["--allow-private-urls", *args])


__all__ = [
    "BREAKS",
    "KINDS",
    "LEGAL_VARIANTS",
    "Break",
    "Exchange",
    "Reply",
    "StreamHead",
    "breaking_proxy",
    "hostile_server",
    "serve_app",
    "ssrf_unsafe_target",
]
