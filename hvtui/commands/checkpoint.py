"""`hvtui checkpoint create|apply|remove|rename`: checkpoint actions, headless.

The same core calls, confirmations, refusals and audit entries as the console:
apply and remove print exactly what will happen and ask ``[y/N]`` (default No);
``--yes`` skips the question; with no terminal to ask on and no ``--yes`` they are
refused.  Read-only mode (``--read-only``, the config, the host) refuses every change
in the core, and so does a merge the volume cannot take (unless ``--force``).
"""

from __future__ import annotations

import argparse
from typing import Any

from hvtui.actions.names import find_checkpoint
from hvtui.audit import RESULT_DECLINED, RESULT_REFUSED
from hvtui.commands import confirm, show
from hvtui.commands.progress import ProgressLine
from hvtui.core import Core
from hvtui.errors import RefusedError
from hvtui.model import VM
from hvtui.policy import size_text

EXIT_OK = 0
EXIT_DECLINED = 1


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "checkpoint",
        parents=parents,
        help="create, apply, delete or rename a checkpoint",
        description="Checkpoint actions with the console's confirmations, refusals and audit log.",
    )
    actions = parser.add_subparsers(dest="checkpoint_action", metavar="ACTION", required=True)

    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--host", metavar="H", help="the host (needed when the VM name is on several)")
    target.add_argument("--vm", metavar="V", required=True, help="VM name or id")

    create = actions.add_parser("create", parents=[*parents, target], help="take a checkpoint")
    create.add_argument("--name", metavar="N", help="checkpoint name (default: Hyper-V's, 'VM - (date - time)')")
    create.add_argument(
        "--type", type=str.lower, choices=("standard", "production"), default="standard", help="checkpoint type"
    )
    create.set_defaults(handler=run_create)

    existing = argparse.ArgumentParser(add_help=False)
    existing.add_argument("--checkpoint", metavar="NAME_OR_ID", required=True, help="checkpoint name or id")

    confirm = argparse.ArgumentParser(add_help=False)
    confirm.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    apply = actions.add_parser(
        "apply",
        parents=[*parents, target, existing, confirm],
        help="return the VM to a checkpoint (its current state is lost)",
    )
    apply.add_argument(
        "--checkpoint-first", action="store_true", help="first take a checkpoint of the current state, then apply"
    )
    apply.set_defaults(handler=run_apply)

    remove = actions.add_parser(
        "remove",
        aliases=["delete"],
        parents=[*parents, target, existing, confirm],
        help="delete a checkpoint (its differencing data merges)",
    )
    remove.add_argument("--subtree", action="store_true", help="delete the checkpoint and all its descendants")
    remove.add_argument(
        "--force", action="store_true", help="delete even when the merge may not fit on the volume (merge-headroom)"
    )
    remove.set_defaults(handler=run_remove)

    rename = actions.add_parser("rename", parents=[*parents, target, existing], help="rename a checkpoint")
    rename.add_argument("--to", metavar="NEW", required=True, help="the new name (1-100 characters)")
    rename.set_defaults(handler=run_rename)


# -- helpers -----------------------------------------------------------------------------------------
def _resolve_vm(args: argparse.Namespace, core: Core, action: str) -> VM:
    if args.host:
        # Refuse before reading anything when the answer is already known.
        core.actions.require_writable(action, args.host, args.vm, _args(args))
    vm = core.inventory.find_vm(args.vm, args.host)
    if not args.host:
        core.actions.require_writable(action, vm.host, vm.name, _args(args))
    return vm


def _args(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("vm", "checkpoint", "name", "type", "subtree", "force", "checkpoint_first", "to")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) not in (None, False)}


def _confirm_or_decline(core: Core, action: str, vm: VM, question: str, args: argparse.Namespace) -> bool:
    try:
        agreed = confirm(question, args.yes)
    except RefusedError as err:
        core.audit.record(action, vm.host, vm.name, _args(args), RESULT_REFUSED, 0.0, str(err))
        raise
    if not agreed:
        core.audit.record(action, vm.host, vm.name, _args(args), RESULT_DECLINED, 0.0, "not confirmed")
        show("Not confirmed: nothing changed.")
    return agreed


# -- handlers ----------------------------------------------------------------------------------------
def run_create(args: argparse.Namespace, core: Core) -> int:
    vm = _resolve_vm(args, core, "checkpoint.create")
    created = core.actions.create(vm.host, vm.id, args.name, args.type.capitalize())
    show(f"Created {created.type} checkpoint {created.name!r} (id {created.id}) of VM {vm.name!r} on {vm.host!r}.")
    return EXIT_OK


def run_apply(args: argparse.Namespace, core: Core) -> int:
    vm = _resolve_vm(args, core, "checkpoint.apply")
    cp = find_checkpoint(vm, args.checkpoint)
    plan = core.actions.plan_apply(vm.host, vm.id, cp.id)
    show(plan.describe(checkpoint_first=args.checkpoint_first))
    if not _confirm_or_decline(core, "checkpoint.apply", vm, "Apply this checkpoint?", args):
        return EXIT_DECLINED
    progress = ProgressLine()
    try:
        saved = core.actions.apply(vm.host, vm.id, cp.id, checkpoint_first=args.checkpoint_first, progress=progress)
    finally:
        progress.close()
    if saved is not None:
        show(f"Saved the previous state as checkpoint {saved.name!r} (id {saved.id}).")
    show(f"Applied checkpoint {cp.name!r} to VM {vm.name!r} on {vm.host!r}.")
    return EXIT_OK


def run_remove(args: argparse.Namespace, core: Core) -> int:
    vm = _resolve_vm(args, core, "checkpoint.remove")
    cp = find_checkpoint(vm, args.checkpoint)
    plan = core.actions.plan_remove(vm.host, vm.id, cp.id, subtree=args.subtree)
    show(plan.describe())
    refusal = plan.refusal(args.force)
    if refusal is not None:
        # No point asking: the core would refuse it (and does, should the volume fill meanwhile).
        core.audit.record("checkpoint.remove", vm.host, vm.name, _args(args), RESULT_REFUSED, 0.0, refusal)
        raise RefusedError(refusal)
    question = "Delete this checkpoint subtree?" if args.subtree else "Delete this checkpoint?"
    if not _confirm_or_decline(core, "checkpoint.remove", vm, question, args):
        return EXIT_DECLINED
    progress = ProgressLine()
    try:
        done = core.actions.remove(vm.host, vm.id, cp.id, subtree=args.subtree, force=args.force, progress=progress)
    finally:
        progress.close()
    count = len(done.checkpoints)
    what = f"{count} checkpoints" if count > 1 else f"checkpoint {cp.name!r}"
    if done.merge_pending:
        show(
            f"Deleted {what} of VM {vm.name!r} on {vm.host!r}; "
            "the merge continues on the host; the chain shrinks when it is done."
        )
    else:
        show(f"Deleted {what} of VM {vm.name!r} on {vm.host!r}; {size_text(done.bytes_to_move)} merged.")
    return EXIT_OK


def run_rename(args: argparse.Namespace, core: Core) -> int:
    vm = _resolve_vm(args, core, "checkpoint.rename")
    cp = find_checkpoint(vm, args.checkpoint)
    core.actions.rename(vm.host, vm.id, cp.id, args.to)
    show(f"Renamed checkpoint {cp.name!r} of VM {vm.name!r} on {vm.host!r} to {args.to.strip()!r}.")
    return EXIT_OK
