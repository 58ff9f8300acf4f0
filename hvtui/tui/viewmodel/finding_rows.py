"""The findings table's rows: columns, severity text, filtering, widths."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from rich.cells import cell_len

from hvtui.model import Finding
from hvtui.tui.viewmodel.cells import NO_STYLE, Cell, ColumnSpec, Palette
from hvtui.tui.viewmodel.format import age_text
from hvtui.tui.viewmodel.vm_rows import HEALTH_TEXT

FINDING_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("severity", "SEV", 0, 6),
    ColumnSpec("host", "HOST", 0, 16),
    ColumnSpec("vm", "VM", 0, 24),
    ColumnSpec("rule", "RULE", 1, 24),
    ColumnSpec("age", "AGE", 2, 14),
    ColumnSpec("message", "MESSAGE", 0, 200, flex=True),
)


def finding_key(finding: Finding) -> str:
    """A stable identity for a finding across refreshes (severity and numbers left out)."""
    key = "|".join((finding.rule, finding.host, finding.vm_id or "", finding.checkpoint_id or "", finding.file or ""))
    if "window" in finding.data:  # a change window's one finding: its name tells two windows on the same hosts apart
        key += f"|{finding.data['window']}"
    return key


def finding_severity_text(finding: Finding) -> str:
    if finding.exempt_reason is not None:
        return "EXEMPT"
    return HEALTH_TEXT.get(finding.severity, "OK")


@dataclasses.dataclass(frozen=True, slots=True)
class FindingRow:
    key: str
    finding: Finding
    plain: tuple[str, ...]
    haystack: str
    texts: tuple[Cell, ...]
    palette_generation: int

    def restyled(self, palette: Palette) -> FindingRow:
        return dataclasses.replace(
            self, texts=_finding_texts(self.finding, self.plain, palette), palette_generation=palette.generation
        )


def _finding_texts(finding: Finding, plain: tuple[str, ...], palette: Palette) -> tuple[Cell, ...]:
    exempt = finding.exempt_reason is not None
    severity = palette.muted if exempt else palette.severity(finding.severity)
    rest = palette.muted if exempt else NO_STYLE
    return tuple(Cell(value, severity if spec.id == "severity" else rest) for spec, value in zip(FINDING_COLUMNS, plain, strict=True))


def build_finding_rows(
    findings: Sequence[Finding], palette: Palette, previous: Sequence[FindingRow] = ()
) -> list[FindingRow]:
    rows: list[FindingRow] = []
    seen: dict[str, int] = {}
    before = {row.key: row for row in previous if row.palette_generation == palette.generation}
    for finding in findings:
        key = finding_key(finding)
        count = seen.get(key, 0)
        seen[key] = count + 1
        if count:
            key = f"{key}#{count}"
        old = before.get(key)
        if old is not None and old.finding == finding:
            rows.append(old)  # same finding, same look: the table skips it
            continue
        message = finding.message
        if finding.exempt_reason is not None:
            message = f"exempt ({finding.exempt_reason}): {message}"
        plain = (
            finding_severity_text(finding),
            finding.host,
            finding.vm_name or "",
            finding.rule,
            age_text(finding.age_seconds) if finding.age_seconds is not None else "",
            message,
        )
        rows.append(
            FindingRow(
                key=key,
                finding=finding,
                plain=plain,
                haystack="\t".join((finding.host, finding.vm_name or "", finding.rule, message)).casefold(),
                texts=_finding_texts(finding, plain, palette),
                palette_generation=palette.generation,
            )
        )
    return rows


def filter_finding_rows(rows: Iterable[FindingRow], query: str) -> list[FindingRow]:
    folded = query.strip().casefold()
    if not folded:
        return list(rows)
    return [row for row in rows if folded in row.haystack]


def finding_column_widths(rows: Iterable[FindingRow]) -> dict[str, int]:
    widths = [cell_len(spec.label) for spec in FINDING_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            length = len(value) if value.isascii() else cell_len(value)
            if length > widths[index]:
                widths[index] = length
    return {spec.id: min(width, max(spec.max_width, cell_len(spec.label))) for spec, width in zip(FINDING_COLUMNS, widths, strict=True)}
