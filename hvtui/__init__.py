"""hvtui: a terminal console for Hyper-V checkpoints, sprawl and backups."""

__version__ = "0.1.0"
