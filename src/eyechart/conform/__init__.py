"""Conformance: checks of CONTRACT.md as pytest cases, run by ``eyechart conform`` or ``pytest conformance``.

``checks`` (the ``check`` decorator, ``fail``/``expect``/``expect_schema``/``skip``, ``CheckResult``),
``session`` (the ``api`` object cases use to talk to the target), ``runner`` (pytest in-process with
our progress and summary), ``command`` (the CLI). The cases themselves live in ``conformance/``.
"""

from eyechart.conform.checks import (
    CheckFailed,
    CheckResult,
    HarnessBug,
    check,
    expect,
    expect_schema,
    fail,
    skip,
)

__all__ = ["CheckFailed", "CheckResult", "HarnessBug", "check", "expect", "expect_schema", "fail", "skip"]
