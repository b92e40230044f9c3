"""The result of validating a table: one row per failing check, and a one-line summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: The ``column`` of failures that concern the whole table (row count, extra columns...).
TABLE = "<table>"
#: The columns of ``ValidationReport.frame``, in order.
REPORT_COLUMNS = ("column", "check", "failures", "samples", "expected", "rows")
#: How many failing values (and row positions) a failure keeps.
MAX_SAMPLES = 5
#: How many failures the summary names before eliding the rest.
SUMMARY_ITEMS = 8


@dataclass(frozen=True)
class Failure:
    """One failing check.

    Attributes:
        column: the column concerned, or ``<table>``.
        check: the rule that failed: ``required``, ``dtype``, ``not_null``, ``unique``,
            ``in_range``, ``isin``, ``regex``, ``rows``, ``strict`` or a custom check's name.
        failures: how many rows (or, for ``strict``, columns) fail it.
        samples: up to 5 distinct failing values, as text.
        expected: what the rule asks for, in words.
        rows: the positions (0-based) of up to 5 failing rows.
        note: how the summary describes it; ``None`` means "N rows".
    """

    column: str
    check: str
    failures: int
    samples: tuple[str, ...] = ()
    expected: str = ""
    rows: tuple[int, ...] = ()
    note: str | None = None

    def describe(self) -> str:
        if self.note is not None:
            what = self.note
        else:
            what = f"{self.failures} row{'' if self.failures == 1 else 's'}"
        return f"{self.column} ({self.check}: {what})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "check": self.check,
            "failures": self.failures,
            "samples": list(self.samples),
            "expected": self.expected,
            "rows": list(self.rows),
        }


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate`` found.

    Attributes:
        schema: the schema's name (its file, as given to ``load_schema``).
        rows_checked: the number of rows validated.
        checks: the number of rules the schema applied.
        failures: the failing checks, in schema order.
    """

    schema: str
    rows_checked: int
    checks: int
    failures: tuple[Failure, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.failures

    @property
    def frame(self) -> pd.DataFrame:
        """One row per failing check: column, check, failures, samples, expected, rows.

        Every column is flat (text, and an integer count), so the table stores, fingerprints
        and prints like any other: ``samples`` is the failing values joined with ", " and
        ``rows`` the failing row positions likewise. ``failures`` (the attribute) and
        ``to_dict()`` keep them as lists.
        """
        import pandas as pd

        records = [
            {**f.to_dict(), "samples": ", ".join(f.samples), "rows": ", ".join(map(str, f.rows))}
            for f in self.failures
        ]
        frame = pd.DataFrame(records, columns=list(REPORT_COLUMNS))
        return frame.astype(
            {"column": "str", "check": "str", "failures": "int64", "samples": "str"}
            | {"expected": "str", "rows": "str"}
        )

    @property
    def failed_columns(self) -> list[str]:
        """The columns with a failing check (``<table>`` last, if the table itself failed)."""
        names = list(dict.fromkeys(f.column for f in self.failures if f.column != TABLE))
        if any(f.column == TABLE for f in self.failures):
            names.append(TABLE)
        return names

    @property
    def summary(self) -> str:
        """``3 checks failed in 2 columns: age (in_range: 12 rows), plan (isin: 3 rows), ...``."""
        n = len(self.failures)
        if not n:
            plural = "" if self.checks == 1 else "s"
            return f"all {self.checks} check{plural} passed on {self.rows_checked} rows"
        columns = [c for c in self.failed_columns if c != TABLE]
        where = []
        if columns:
            where.append(f"{len(columns)} column{'' if len(columns) == 1 else 's'}")
        if TABLE in self.failed_columns:
            where.append("the table")
        items = [f.describe() for f in self.failures[:SUMMARY_ITEMS]]
        if n > SUMMARY_ITEMS:
            items.append(f"and {n - SUMMARY_ITEMS} more")
        head = f"{n} check{'' if n == 1 else 's'} failed in {' and '.join(where)}"
        return f"{head}: {', '.join(items)}"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (what ``tessera validate --json`` prints)."""
        return {
            "ok": self.ok,
            "schema": self.schema,
            "rows_checked": self.rows_checked,
            "checks": self.checks,
            "summary": self.summary,
            "failures": [f.to_dict() for f in self.failures],
        }
