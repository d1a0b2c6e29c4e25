"""Every check cites a clause of the contract the repository ships (conformance/CONTRACT.md).

A report's ``clause`` is only worth something if a user can look it up: each ``@check(clause=...)`` in
``conformance/test_*.py``, each invariant of ``eyechart.invariants`` and each break of
``tests/faulty_targets`` must name a clause id that is a ``###`` heading of conformance/CONTRACT.md,
and nothing in the suite may point at a contract or design file outside the repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from faulty_targets import BREAKS, LEGAL_VARIANTS

from eyechart import invariants

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "conformance" / "CONTRACT.md"
CLAUSE_ID = re.compile(r"[a-z]+(?:\.[a-z_]+)+")


def contract_clauses() -> list[str]:
    """The clause ids: the first word of every ``###`` heading of CONTRACT.md."""
    lines = CONTRACT.read_text(encoding="utf-8").splitlines()
    return [line.split()[1] for line in lines if line.startswith("### ")]


def cited_clauses() -> dict[str, str]:
    """check id (template) -> the ``clause=`` it cites, read from the source of every check module."""
    cited: dict[str, str] = {}
    for path in sorted((ROOT / "conformance").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check"):
                continue
            check_id = ast.literal_eval(node.args[0])
            clause = next(k.value for k in node.keywords if k.arg == "clause")
            assert isinstance(clause, ast.Constant), f"{path.name}: {check_id} computes its clause"
            cited[f"{path.name}:{check_id}"] = str(clause.value)
    return cited


def test_clause_ids_are_unique_dotted_headings() -> None:
    ids = contract_clauses()
    assert len(ids) > 40
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    loose = [i for i in ids if not CLAUSE_ID.fullmatch(i) and i not in ("severity", "profiles")]
    assert not loose, f"clause ids must be dotted lower-case words: {loose}"


def test_every_check_cites_a_clause_of_the_contract() -> None:
    cited = cited_clauses()
    assert len(cited) >= 95  # every @check of the suite was found
    known = set(contract_clauses())
    unknown = {check: clause for check, clause in cited.items() if clause not in known}
    assert not unknown, f"checks citing a clause CONTRACT.md does not define: {unknown}"


def test_every_break_names_a_clause_of_the_contract() -> None:
    known = set(contract_clauses())
    unknown = {b.name: b.clause for b in {**BREAKS, **LEGAL_VARIANTS}.values() if b.clause not in known}
    assert not unknown, f"breaks naming a clause CONTRACT.md does not define: {unknown}"


def test_every_invariant_cites_a_clause_of_the_contract() -> None:
    """The invariants judged on every exchange (and on a sample under load) cite the same clauses."""
    rows = invariants.describe()
    assert rows
    known = set(contract_clauses())
    unknown = {r["id"]: r["clause"] for r in rows if r["clause"] not in known}
    assert not unknown, f"invariants citing a clause CONTRACT.md does not define: {unknown}"


def test_the_suite_points_at_no_file_outside_the_repository() -> None:
    owned = [
        *(ROOT / "conformance").glob("*.py"),
        *(ROOT / "conformance").glob("*.md"),
        *(ROOT / "conformance" / "schemas").glob("*.json"),
        *(ROOT / "tests" / "faulty_targets").glob("*.py"),
    ]
    outside = re.compile(r"shared/|\.\./\.\./|DESIGN\.md|CONTRACT\.md section|section \d")
    found = {
        p.name: m.group(0) for p in owned if (m := outside.search(p.read_text(encoding="utf-8"))) is not None
    }
    assert not found, f"references to files outside the repository (or to old section numbers): {found}"
