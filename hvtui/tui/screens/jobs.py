"""The jobs view slot (`:jobs`): backup and restore jobs arrive with the jobs issue."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from hvtui.tui.screens.base import ViewScreen, ViewTitle

PLACEHOLDER = (
    "Backup and restore jobs: this view arrives with the jobs issue.\n\n"
    "This view will list queued, running and finished jobs with live progress, "
    "and let you cancel and retry them."
)


class JobsScreen(ViewScreen):
    view_name = "jobs"
    view_title = "Jobs"

    DEFAULT_CSS = """
    JobsScreen #jobs-placeholder {
        height: 1fr;
        padding: 1 2;
        color: $sev-muted;
    }
    """

    def compose_body(self) -> ComposeResult:
        yield ViewTitle("Jobs")
        yield Static(PLACEHOLDER, id="jobs-placeholder", markup=False)
