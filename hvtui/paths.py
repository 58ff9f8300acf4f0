"""Where hvtui keeps its files (XDG on Linux, via platformdirs which Textual already uses)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "hvtui"


@dataclass(frozen=True, slots=True)
class Paths:
    config_dir: Path
    data_dir: Path
    state_dir: Path

    @classmethod
    def default(cls) -> Paths:
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP)),
            data_dir=Path(platformdirs.user_data_dir(APP)),
            state_dir=Path(platformdirs.user_state_dir(APP)),
        )

    @property
    def default_config_candidates(self) -> list[Path]:
        return [self.config_dir / "config.yaml", self.config_dir / "config.yml"]

    @property
    def lab_dir(self) -> Path:
        return self.data_dir / "lab"

    @property
    def default_repository(self) -> Path:
        return self.data_dir / "repository"

    def repository_working_dir(self, name: str) -> Path:
        """This machine's working folder for the repository ``name`` that lives in a bucket: copies of
        its config and key slots, packs before their upload (``hvtui.engine.remote_repo``)."""
        return self.state_dir / "repositories" / name

    @property
    def user_themes_dir(self) -> Path:
        return self.config_dir / "themes"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "hvtui.log"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.jsonl"

    @property
    def job_journal(self) -> Path:
        return self.state_dir / "jobs.jsonl"

    @property
    def change_windows(self) -> Path:
        """The change windows (``hvtui.changes.store``)."""
        return self.state_dir / "change-windows.json"

    @property
    def notification_state(self) -> Path:
        """Each notification's latest delivery outcome (``hvtui.notify.state``)."""
        return self.state_dir / "notifications.json"

    @property
    def schedule_journal(self) -> Path:
        """The runs of the backup schedules (``hvtui.schedules.journal``)."""
        return self.state_dir / "schedules.jsonl"

    @property
    def schedule_lock(self) -> Path:
        """Held by the one ``hvtui schedule run-due`` running (``hvtui.schedules.runner``)."""
        return self.state_dir / "schedule-run.lock"

    @property
    def checkpoint_journal(self) -> Path:
        """The Recovery checkpoints hvtui's backups took (``hvtui.backups.ledger``)."""
        return self.state_dir / "checkpoints.jsonl"


def env_config_path() -> Path | None:
    value = os.environ.get("HVTUI_CONFIG")
    return Path(value).expanduser() if value else None


def bundled_theme_dirs() -> list[Path]:
    """The directory holding the themes that ship with hvtui (empty if none is found).

    ``themes/`` beside the package in a checkout or an editable install wins; a wheel
    installs the same files under ``<prefix>/share/hvtui/themes``.
    """
    package_dir = Path(__file__).resolve().parent  # .../hvtui
    for candidate in (package_dir.parent / "themes", Path(sys.prefix) / "share" / "hvtui" / "themes"):
        if candidate.is_dir():
            return [candidate]
    return []
