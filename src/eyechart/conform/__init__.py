"""Conformance: checks of the contract (``conformance/CONTRACT.md``) as pytest cases.

``checks`` (the ``check`` decorator, ``fail``/``expect``/``expect_schema``/``skip``), ``session`` (the
``api`` object cases use to talk to the target), ``reading`` (helpers that read a response or fail
with evidence), ``evidence`` (what a finding shows), ``results`` (verdicts, the run and its exit code),
``recording`` (pytest outcomes into verdicts), ``runner`` (pytest in-process with our progress bar).
The cases themselves live in ``conformance/``. Nothing is imported here: the pytest plugin is loaded in
every pytest run of an environment and must stay cheap until a suite really uses it.
"""
