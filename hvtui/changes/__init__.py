"""Change windows: checkpoint many VMs before a change, then roll back, promote (back up,
then delete the checkpoint) or discard.

- ``record``: what a window is (``ChangeWindow``, one ``WindowVM`` per VM and its state).
- ``store``: the windows on disk (one JSON file in the state directory, written atomically).
- ``service``: ``ChangeWindows``, the steps, made safe through the checkpoint actions.
"""

from hvtui.changes.record import ChangeWindow, VMState, WindowVM
from hvtui.changes.service import BackupOutcome, ChangeWindows, StepOutcome, StepReport
from hvtui.changes.store import WindowStore

__all__ = [
    "BackupOutcome",
    "ChangeWindow",
    "ChangeWindows",
    "StepOutcome",
    "StepReport",
    "VMState",
    "WindowStore",
    "WindowVM",
]
