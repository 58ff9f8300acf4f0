"""The ``:repos`` view's rows: each configured repository's backend, format, encryption, size,
restore points, last backup, last copy into it and where it copies to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import tzinfo

from rich.cells import cell_len

from hvtui.backups.copies import RepositoryOverview
from hvtui.tui.viewmodel.cells import NO_STYLE, Cell, ColumnSpec, Palette
from hvtui.tui.viewmodel.format import local_time_text, size_text

REPOSITORY_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("name", "REPOSITORY", 0, 20),
    ColumnSpec("backend", "BACKEND", 2, 8),
    ColumnSpec("format", "FORMAT", 1, 10),
    ColumnSpec("encryption", "ENCRYPTION", 1, 12),
    ColumnSpec("size", "SIZE", 0, 10, right=True),
    ColumnSpec("points", "POINTS", 0, 7, right=True),
    ColumnSpec("last_backup", "LAST BACKUP", 2, 16),
    ColumnSpec("last_copy", "LAST COPY", 0, 28),
    ColumnSpec("copy_to", "COPIES TO", 1, 20),
    ColumnSpec("path", "WHERE", 3, 200, flex=True),
)


@dataclasses.dataclass(frozen=True, slots=True)
class RepositoryRow:
    key: str
    overview: RepositoryOverview
    plain: tuple[str, ...]
    texts: tuple[Cell, ...]


def _format(repo: RepositoryOverview) -> str:
    info = repo.info
    if info.state == "absent":  # what a first backup will make it
        return f"{info.creates_format} (new)" if info.creates_format is not None else "not created"
    if info.state in ("damaged", "unreachable"):
        return info.state.upper()
    return f"{info.version}" if info.version is not None else "-"


def build_repository_rows(repos: Sequence[RepositoryOverview], zone: tzinfo, palette: Palette) -> list[RepositoryRow]:
    rows = []
    for repo in repos:
        info = repo.info
        last_copy = "-" if repo.last_copy is None else f"{local_time_text(repo.last_copy, zone)} from {repo.last_copy_from}"
        plain = (
            info.name + (" (default)" if info.default else ""),
            info.backend,
            _format(repo),
            "locked" if info.state == "locked" else "encrypted" if info.encrypted else "none",
            size_text(info.size_bytes) if info.state == "ok" else "-",
            str(info.points) if info.state == "ok" else "-",
            local_time_text(info.last_backup, zone),
            last_copy,
            repo.copy_to or "-",
            info.where or str(info.path),
        )
        style = palette.crit if info.state in ("damaged", "unreachable") else NO_STYLE
        texts = tuple(Cell(value, style if spec.id == "format" else NO_STYLE) for spec, value in zip(REPOSITORY_COLUMNS, plain, strict=True))
        rows.append(RepositoryRow(info.name, repo, plain, texts))
    return rows


def repository_column_widths(rows: Iterable[RepositoryRow]) -> dict[str, int]:
    widths = [cell_len(spec.label) for spec in REPOSITORY_COLUMNS]
    for row in rows:
        for index, value in enumerate(row.plain):
            widths[index] = max(widths[index], cell_len(value))
    return {spec.id: min(width, max(spec.max_width, cell_len(spec.label))) for spec, width in zip(REPOSITORY_COLUMNS, widths, strict=True)}


def repository_detail(row: RepositoryRow) -> str:
    info = row.overview.info
    lines = [f"{info.name}: {info.backend} repository at {info.where or info.path}"]
    if info.endpoint:
        lines.append(f"endpoint {info.endpoint}; this machine's working folder for it: {info.path}")
    if info.problem:
        lines.append(f"{info.state}: {info.problem}")
    if info.compression:
        lines.append(f"compression {info.compression}")
    if row.overview.copy_to:
        lines.append(f"each successful backup here is copied to {row.overview.copy_to} (`hvtui copy`)")
    return "\n".join(lines)
