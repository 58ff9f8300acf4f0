"""Checkpoint actions in the console: their dialogs, the running actions, read-only refusals.

Plans and checkpoint actions run in thread workers, with progress events throttled to a
few per second.  ``CheckpointActionsMixin`` is one of the parts ``hvtui.tui.app.HvtuiApp``
is made of.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual import work
from textual.message import Message
from textual.worker import Worker, WorkerState

from hvtui.errors import ReadOnlyError, RefusedError
from hvtui.events import CancelToken, Progress, ProgressCallback
from hvtui.tui.viewmodel.format import default_checkpoint_name
from hvtui.tui.widgets.bars import ActionView

if TYPE_CHECKING:
    from hvtui.tui.screens.dialogs import CreateRequest

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25  # at most four progress updates a second reach the UI


class ActionProgress(Message):
    """A progress event of a running checkpoint action (posted from its thread)."""

    def __init__(self, action_id: int, event: Progress) -> None:
        super().__init__()
        self.action_id = action_id
        self.event = event


@dataclass
class RunningAction:
    id: int
    title: str
    token: CancelToken
    done: Callable[[Any], str]
    host: str | None = None  # the host it changes: read again when it ends
    progress: Progress | None = None
    started: float = field(default_factory=time.monotonic)


class CheckpointActionsMixin:
    """The app's checkpoint actions: create, rename, apply, delete (mixed into the app)."""

    def init_action_state(self) -> None:
        self._actions: dict[int, RunningAction] = {}
        self._action_ids = itertools.count(1)
        self._action_workers: dict[Worker, int] = {}

    # -- read-only ---------------------------------------------------------------------------------------
    def read_only_reason(self, host: str) -> str | None:
        """Why changes to ``host`` are refused (the core refuses too), or None."""
        if self.core.read_only:
            return "hvtui runs read-only"
        host_config = self.core.config.host(host)
        if host_config is not None and host_config.read_only:
            return f"host {host} is read-only"
        if self.snapshot is not None:
            host_inv = self.snapshot.inventory.host(host)
            if host_inv is not None and host_inv.read_only:
                return f"host {host} is read-only"
        return None

    def _refuse_if_read_only(self, host: str) -> bool:
        reason = self.read_only_reason(host)
        if reason is not None:
            self.notify(reason, title="Refused: read-only", severity="error")
            return True
        return False

    # -- checkpoint actions ------------------------------------------------------------------------------
    def _vm(self, host: str, vm_id: str):  # -> VM | None
        return self.snapshot.inventory.vm(host, vm_id) if self.snapshot is not None else None

    def start_create(self, host: str, vm_id: str) -> None:
        vm = self._vm(host, vm_id)
        if vm is None or self._refuse_if_read_only(host):
            return
        from hvtui.actions import vm_checkpoint_type
        from hvtui.tui.screens.dialogs import CreateCheckpointDialog

        default = default_checkpoint_name(vm.name, self.core.clock.now())
        dialog = CreateCheckpointDialog(host, vm.name, default, vm_checkpoint_type(vm))

        def chosen(request: CreateRequest | None) -> None:
            if request is None:
                return
            label = request.name or "(default name)"
            self.start_action(
                f"Creating {request.type} checkpoint {label!r} of {host}/{vm.name}",
                lambda _progress, _cancel: self.core.actions.create(host, vm_id, request.name, request.type),
                done=lambda cp: f"Checkpoint {cp.name!r} of {host}/{vm.name} created",
                host=host,
            )

        self.push_screen(dialog, callback=chosen)

    def start_rename(self, host: str, vm_id: str, checkpoint_id: str) -> None:
        vm = self._vm(host, vm_id)
        cp = vm.checkpoint(checkpoint_id) if vm is not None else None
        if vm is None or cp is None or self._refuse_if_read_only(host):
            return
        from hvtui.tui.screens.dialogs import TextDialog

        dialog = TextDialog(
            f"Rename checkpoint of {vm.name} on {host}",
            f"New name for checkpoint {cp.name!r} (id {cp.id}):",
            value=cp.name,
            ok_label="Rename",
        )

        def chosen(new_name: str | None) -> None:
            if new_name is None or new_name.strip() == cp.name:
                return
            self.start_action(
                f"Renaming checkpoint {cp.name!r} of {host}/{vm.name}",
                lambda _progress, _cancel: self.core.actions.rename(host, vm_id, checkpoint_id, new_name),
                done=lambda _result: f"Checkpoint {cp.name!r} renamed to {new_name.strip()!r}",
                host=host,
            )

        self.push_screen(dialog, callback=chosen)

    def start_apply(self, host: str, vm_id: str, checkpoint_id: str) -> None:
        if self._refuse_if_read_only(host):
            return
        self._apply_flow(host, vm_id, checkpoint_id)

    @work(group="dialog", exit_on_error=False)
    async def _apply_flow(self, host: str, vm_id: str, checkpoint_id: str) -> None:
        from hvtui.tui.screens.dialogs import ChoiceDialog

        plan = await asyncio.to_thread(self.core.actions.plan_apply, host, vm_id, checkpoint_id)
        body = (
            plan.describe(checkpoint_first=False)
            + "\n\nOr: checkpoint first, then apply —\n"
            + plan.describe(checkpoint_first=True).split("\n", 1)[1]
        )
        choice = await self.push_screen_wait(
            ChoiceDialog(
                f"Apply checkpoint {plan.checkpoint.name!r} to {plan.vm_name} on {host}?",
                body,
                [("checkpoint_first", "Checkpoint first, then apply"), ("apply", "Apply (current state lost)")],
            )
        )
        if choice not in ("apply", "checkpoint_first"):
            return
        first = choice == "checkpoint_first"
        self.start_action(
            f"Applying checkpoint {plan.checkpoint.name!r} to {host}/{plan.vm_name}",
            lambda progress, _cancel: self.core.actions.apply(host, vm_id, checkpoint_id, checkpoint_first=first, progress=progress),
            done=lambda _saved: f"{host}/{plan.vm_name} now runs from checkpoint {plan.checkpoint.name!r}"
            + (" (its previous state was checkpointed first)" if first else ""),
            host=host,
        )

    def start_delete(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool = False) -> None:
        if self._refuse_if_read_only(host):
            return
        self._delete_flow(host, vm_id, checkpoint_id, subtree)

    @work(group="dialog", exit_on_error=False)
    async def _delete_flow(self, host: str, vm_id: str, checkpoint_id: str, subtree: bool) -> None:
        from hvtui.tui.screens.dialogs import ChoiceDialog, ConfirmDialog

        plan = await asyncio.to_thread(self.core.actions.plan_remove, host, vm_id, checkpoint_id, subtree)
        what = "checkpoint subtree" if subtree else "checkpoint"
        title = f"Delete {what} {plan.checkpoint.name!r} of {plan.vm_name} on {host}?"
        if plan.headroom_ok:
            choices = [("delete", "Delete subtree" if subtree else "Delete")]
        else:
            choices = [("force", "Force delete…")]
        # The merges and the free-space verdict stay in view; the list of what goes scrolls.
        details, consequences = plan.describe_parts()
        recovery = [cp for cp in plan.checkpoints if cp.type == "Recovery"]
        vm = self._vm(host, vm_id)
        if recovery and vm is not None:
            # First, where it is seen: whether deleting it can break somebody's backup.
            details = await asyncio.to_thread(self._recovery_note, vm, recovery) + "\n\n" + details
        choice = await self.push_screen_wait(ChoiceDialog(title, details, choices, summary=consequences))
        if choice not in ("delete", "force"):
            return
        force = False
        if choice == "force":
            short = "; ".join(room.text() for room in plan.headrooms if not room.ok)
            confirmed = await self.push_screen_wait(
                ConfirmDialog(
                    f"Force the merge of {plan.checkpoint.name!r} on {host}?",
                    f"The merge-headroom rule refuses this delete: {short}.\n\n"
                    "A merge that fills the volume pauses every VM on it. Force it only if you know "
                    "the space will be there.",
                    yes_label="Force delete",
                )
            )
            if not confirmed:
                return
            force = True
        count = len(plan.checkpoints)
        self.start_action(
            f"Deleting {what} {plan.checkpoint.name!r} of {host}/{plan.vm_name}",
            lambda progress, cancel: self.core.actions.remove(
                host, vm_id, checkpoint_id, subtree=subtree, force=force, progress=progress, cancel=cancel
            ),
            done=lambda done_plan: f"Deleted {count} checkpoint{'s' if count != 1 else ''} of {host}/{plan.vm_name} "
            f"({plan.checkpoint.name!r}); "
            # A WinRM host may still be merging when Remove-VMSnapshot returns.
            + ("the merge continues on the host; the chain shrinks when it is done" if done_plan.merge_pending else "merged"),
            host=host,
        )

    def _recovery_note(self, vm: Any, checkpoints: list[Any]) -> str:
        """Whose Recovery checkpoints these are, for the delete question (reads the checkpoint journal)."""
        lines = []
        for cp in checkpoints:
            left_by = self.core.backups.backup_checkpoint_left(vm, cp)
            if left_by is not None:
                lines.append(f"{cp.name!r} is hvtui's: {left_by} took it and is no longer running; nothing uses it.")
            else:
                lines.append(
                    f"{cp.name!r} is a Recovery checkpoint hvtui cannot prove is its own: another backup product "
                    "(or a backup still running) may be using it, and removing it breaks that backup. Delete it "
                    "only once you know no backup of this VM is running."
                )
        return "\n".join(lines)

    def start_action(
        self,
        title: str,
        call: Callable[[ProgressCallback, CancelToken], Any],
        done: Callable[[Any], str],
        host: str | None = None,
    ) -> int:
        """Run a checkpoint action in a thread worker, with throttled progress; returns its id.

        ``host``: the host it changes, read again (alone) when the action ends; without
        it, every host is."""
        action = RunningAction(next(self._action_ids), title, CancelToken(), done, host)
        self._actions[action.id] = action
        last_post = [0.0]

        def progress(event: Progress) -> None:  # called in the worker thread
            now = time.monotonic()
            if now - last_post[0] >= PROGRESS_INTERVAL or event.phase == "done":
                last_post[0] = now
                self.post_message(ActionProgress(action.id, event))

        def run() -> Any:
            return call(progress, action.token)

        worker = self.run_worker(run, name=title, group="action", thread=True, exit_on_error=False)
        self._action_workers[worker] = action.id
        self.sync_current_bars()
        return action.id

    def on_action_progress(self, message: ActionProgress) -> None:
        action = self._actions.get(message.action_id)
        if action is not None:
            action.progress = message.event
            self.sync_current_bars()

    def action_finished(self, worker: Worker) -> None:
        action_id = self._action_workers.pop(worker, None)
        action = self._actions.pop(action_id, None) if action_id is not None else None
        if action is None:
            return
        if worker.state == WorkerState.SUCCESS:
            try:
                message = action.done(worker.result)
            except Exception:  # a message formatter must not hide a success
                log.exception("formatting the result of %s", action.title)
                message = action.title + ": done"
            log.info("%s", message)
            self.notify(message, title="Done", timeout=6)
        elif worker.state == WorkerState.ERROR and worker.error is not None:
            title = "Refused" if isinstance(worker.error, (ReadOnlyError, RefusedError)) else "Failed"
            self.notify(self.describe_error(worker.error, action.title), title=title, severity="error", timeout=15)
        elif worker.state == WorkerState.CANCELLED:
            self.notify(f"{action.title}: cancelled", severity="warning")
        self.sync_current_bars()
        # Show the result now, not in a few seconds; and only its host, so that a full
        # refresh waiting on some hung host does not hold it back.
        self.request_refresh([action.host] if action.host is not None else None)

    @property
    def running_actions(self) -> list[RunningAction]:
        return list(self._actions.values())

    def action_views(self) -> list[ActionView]:
        views = [ActionView(action.title, action.progress) for action in self._actions.values()]
        return views + self.jobs_ui.action_views()

