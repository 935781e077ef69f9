"""The 54 LO2 test cases: label, target service and expected error signature.

Shipped as data (``loglead_lo2/data/test_cases.csv``) so that the generator, the loader's
``target_service`` column and the evaluation all read one table.

Columns: ``test_case``, ``target_service`` (empty for ``correct``), ``mechanism``
(``A`` one status line, ``B`` validation error, ``C`` token-handler ApiException with stack
trace, ``NPE`` uncaught exception with stack trace, ``DEBUG`` / ``DEBUG+A`` debug lines only or
before the status line, ``none`` no trace), ``code`` (``ERR12014``...), ``http_status``,
``status_name``, ``description``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

NORMAL_CASE = "correct"


@dataclass(frozen=True)
class TestCase:
    """One LO2 test case and the trace it is expected to leave."""

    __test__ = False  # not a pytest class

    name: str
    target_service: str | None
    mechanism: str
    code: str | None
    http_status: int
    status_name: str | None
    description: str

    @property
    def is_normal(self) -> bool:
        return self.name == NORMAL_CASE


@lru_cache(maxsize=1)
def test_cases() -> dict[str, TestCase]:
    """All 54 test cases keyed by folder name, in sorted order (``correct`` included)."""
    text = resources.files("loglead_lo2").joinpath("data/test_cases.csv").read_text("utf-8")
    out: dict[str, TestCase] = {}
    for row in csv.DictReader(text.splitlines()):
        out[row["test_case"]] = TestCase(
            name=row["test_case"],
            target_service=row["target_service"] or None,
            mechanism=row["mechanism"],
            code=row["code"] or None,
            http_status=int(row["http_status"]),
            status_name=row["status_name"] or None,
            description=row["description"],
        )
    return dict(sorted(out.items()))


test_cases.__test__ = False  # type: ignore[attr-defined]


def error_cases() -> list[str]:
    """The 53 error-case names, sorted."""
    return [name for name in test_cases() if name != NORMAL_CASE]


def target_service(test_case: str) -> str | None:
    """Service whose log shows the error case's trace; ``None`` for ``correct``/unknown."""
    case = test_cases().get(test_case)
    return case.target_service if case else None


def target_service_map() -> dict[str, str]:
    """``{error case: target service}`` for all 53 error cases."""
    return {name: c.target_service for name, c in test_cases().items() if c.target_service}
