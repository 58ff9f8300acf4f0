"""`hvtui repo init|list|info|migrate|key|locks`: create a configured repository, say what each one is,
convert a format-1 one to format 2, manage the key slots of an encrypted one, list its lock records.

``init`` creates the repository a ``repositories:`` entry names, in the format asked for
(``--format``, default the entry's ``format``, else 2; ``--encrypt``, or a passphrase source in the
entry: encrypted, format 2): a change, so it is refused read-only and audit-logged; an
existing repository is never touched.  ``list`` and ``info`` only read.
``migrate`` asks first (the plan says what happens), is refused read-only and audit-logged.
``key list|add|remove`` (backups/keyslots.py): add and remove are refused read-only and
audit-logged; remove asks.
``locks NAME [--clear-stale]`` (backups/repo_locks.py) lists who holds the repository's locks;
``--clear-stale`` removes the records whose holders are gone (only those, so it does not ask),
refused read-only and audit-logged.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import humanize

from hvtui.commands import confirm, show
from hvtui.commands.output import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, emit_json, fail, reported
from hvtui.commands.progress import ProgressLine
from hvtui.commands.secrets import new_passphrase
from hvtui.errors import RefusedError

if TYPE_CHECKING:
    from hvtui.backups.catalog import RepositoryInfo
    from hvtui.core import Core


def _pack_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of MiB, got {text!r}") from None
    if not 16 <= value <= 128:
        raise argparse.ArgumentTypeError(f"expected 16 to 128 (MiB), got {value}")
    return value


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "repo",
        parents=parents,
        help="create a repository, or say what each repository is",
        description="Create a configured repository (init) or show what each one is: backend, format, "
        "encryption, size, restore points and last backup (list, info).",
    )
    actions = parser.add_subparsers(dest="repo_action", metavar="ACTION", required=True)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    init = actions.add_parser("init", parents=[*parents, output], help="create a configured repository")
    init.add_argument("name", nargs="?", metavar="NAME", help="repository name from the config (default: the default one)")
    init.add_argument(
        "--format",
        type=int,
        choices=(1, 2),
        help="2: pack files with an index and a point index; 1: one file per chunk (default: the entry's format:, else 2)",
    )
    init.add_argument("--pack-size", type=_pack_size, metavar="MIB", help="format 2: target pack size, 16-128 MiB")
    init.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt it (format 2): the passphrase comes from the entry's passphrase_env/passphrase_command, "
        "else it is asked twice on the terminal (an entry with a passphrase source is always encrypted)",
    )
    init.set_defaults(handler=run_init)
    _register_keys(actions, parents, output)

    listing = actions.add_parser("list", parents=[*parents, output], help="every configured repository")
    listing.set_defaults(handler=run_list)
    info = actions.add_parser("info", parents=[*parents, output], help="one repository in detail")
    info.add_argument("name", nargs="?", metavar="NAME", help="repository name from the config (default: the default one)")
    info.set_defaults(handler=run_info)
    migrate = actions.add_parser(
        "migrate",
        parents=[*parents, output],
        help="convert a format-1 repository to format 2",
        description="Copy a format-1 repository's chunk files into pack files, switch its config.json to format 2, "
        "then delete the chunk files. Every restore point stays readable throughout; a migration that was stopped "
        "resumes when run again. Needs free space for the copy while it runs.",
    )
    migrate.add_argument("name", nargs="?", metavar="NAME", help="repository name from the config (default: the default one)")
    migrate.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    migrate.set_defaults(handler=run_migrate)
    locks = actions.add_parser(
        "locks",
        parents=[*parents, output],
        help="who holds the repository's locks; --clear-stale removes those whose holder is gone",
        description="List the repository's lock records: who (pid, machine), what (operation), since when, the last "
        "heartbeat, and whether the holder is gone (stale). --clear-stale removes the stale records only: a live "
        "holder's record is never touched (refused with --read-only; audit-logged).",
    )
    locks.add_argument("name", metavar="NAME", help="repository name from the config")
    locks.add_argument("--clear-stale", action="store_true", help="remove the records whose holder is gone")
    locks.set_defaults(handler=run_locks)


def _register_keys(
    actions: argparse._SubParsersAction, parents: list[argparse.ArgumentParser], output: argparse.ArgumentParser
) -> None:
    key = actions.add_parser("key", parents=parents, help="key slots of an encrypted repository")
    key_actions = key.add_subparsers(dest="key_action", metavar="KEY_ACTION", required=True)
    name = argparse.ArgumentParser(add_help=False)
    name.add_argument("name", metavar="NAME", help="repository name from the config")
    listing = key_actions.add_parser("list", parents=[*parents, output, name], help="the key slots (no passphrase needed)")
    listing.set_defaults(handler=run_key_list)
    add = key_actions.add_parser(
        "add", parents=[*parents, output, name], help="add a passphrase (a new key slot); the data is not re-encrypted"
    )
    add.add_argument(
        "--new-passphrase-env", metavar="VAR", help="take the new passphrase from this environment variable (else asked twice)"
    )
    add.set_defaults(handler=run_key_add)
    remove = key_actions.add_parser("remove", parents=[*parents, output, name], help="remove a key slot (not the last)")
    remove.add_argument("slot", metavar="SLOT", help="the slot id `repo key list` shows")
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler=run_key_remove)


def _slot_line(slot: dict) -> str:
    if slot.get("problem"):
        return f"  key slot {slot['slot']}: DAMAGED: {slot['problem']}"
    kdf = slot["kdf"]
    return f"  key slot {slot['slot']}: created {slot['created']}, {kdf['name']} N=2^{kdf['n'].bit_length() - 1} r={kdf['r']} p={kdf['p']}"


def _describe(info: RepositoryInfo) -> list[str]:
    where = info.where or str(info.path)
    if info.state == "absent":
        made = f"format {info.creates_format}{', encrypted' if info.creates_encrypted else ''}"
        return [f"{info.name}: {where} (nothing backed up there yet; the first backup or `hvtui repo init` makes it {made})"]
    if info.state in ("damaged", "unreachable"):
        problem = (info.problem or "").removeprefix(f"{where}: ")  # a storage's message starts with where it is
        return [f"{info.name}: {where}: {info.state.upper()}: {problem}"]
    slots = [_slot_line(s) for s in info.key_slots]
    encryption = f"encrypted (AES-256-GCM), {len(slots)} key slot{'' if len(slots) == 1 else 's'}"
    backend = f"backend {info.backend}" + (f" at {info.endpoint}" if info.endpoint else "")
    if info.state == "locked":
        return [
            f"{info.name}{' (default)' if info.default else ''}: {where}",
            f"  {backend}, format {info.version}, {encryption}; LOCKED: {info.problem}",
            *slots,
        ]
    packs = f", packs of {info.pack_size // 2**20} MiB" if info.pack_size else ""
    if info.version == 1:
        packs = f" (`hvtui repo migrate {info.name}` converts it to format 2)"
    last = info.last_backup.strftime("%Y-%m-%d %H:%M UTC") if info.last_backup else "never"
    damaged = f" ({info.damaged_points} damaged)" if info.damaged_points else ""
    stored = "on disk" if info.backend == "local" else "stored"
    return [
        f"{info.name}{' (default)' if info.default else ''}: {where}",
        f"  {backend}, format {info.version}{packs}, chunks of {(info.chunk_size or 0) // 1024} KiB, "
        f"{info.compression}, {encryption if info.encrypted else 'not encrypted'}",
        f"  {humanize.naturalsize(info.size_bytes, binary=True)} {stored}, {info.points} restore point{'' if info.points == 1 else 's'}{damaged}, "
        f"last backup {last}",
        *slots,
    ]


@reported
def run_init(args: argparse.Namespace, core: Core) -> int:
    rc = core.backups.repository_config(args.name)
    passphrase = None
    if (args.encrypt or rc.passphrase.configured) and core.backups.read_only_reason() is None:
        if args.format == 1:
            return fail(args, "an encrypted repository is format 2: drop --format 1", EXIT_USAGE)
        if rc.passphrase.env or rc.passphrase.command:
            passphrase = core.repositories.passphrase(rc)()
        else:
            passphrase = new_passphrase(f"new passphrase for repository {rc.name}")
    info = core.backups.init_repository(rc.name, args.format, args.pack_size, passphrase)
    if args.json:
        emit_json({"ok": True, **info.to_dict()})
    else:
        show(f"Created repository {info.name!r} at {info.where or info.path} in format {info.version}.")
        for line in _describe(info)[1:]:
            show(line)
    return EXIT_OK


@reported
def run_list(args: argparse.Namespace, core: Core) -> int:
    infos = core.backups.repository_infos()
    if args.json:
        emit_json({"ok": True, "repositories": [i.to_dict() for i in infos]})
    else:
        for info in infos:
            for line in _describe(info):
                show(line)
    return EXIT_OK


@reported
def run_info(args: argparse.Namespace, core: Core) -> int:
    (info,) = core.backups.repository_infos(args.name or core.backups.repository_config(None).name)
    if args.json:
        emit_json({"ok": True, **info.to_dict()})
    else:
        for line in _describe(info):
            show(line)
    return EXIT_OK


@reported
def run_migrate(args: argparse.Namespace, core: Core) -> int:
    name = args.name or core.backups.repository_config(None).name
    target = f"repository:{name}"
    reason = core.backups.read_only_reason()
    if reason is not None:
        core.migrations.migrate(name)  # refused and audited there (ReadOnlyError)
    plan = core.migrations.plan(name)
    if plan.state == "done":
        if args.json:
            emit_json({"ok": True, "plan": plan.to_dict(), "result": None})
        else:
            show(plan.describe()[0].upper() + plan.describe()[1:] + ".")
        return EXIT_OK
    if (problem := plan.problem()) is not None:
        core.audit.record("repo.migrate", target, None, plan.to_dict(), "refused", 0.0, problem)
        return fail(args, f"repo migrate of {name!r} not started: {problem}", EXIT_REFUSED)
    question = plan.describe()[0].upper() + plan.describe()[1:] + ". Go ahead?"
    try:
        agreed = confirm(question, args.yes)
    except RefusedError as err:
        core.audit.record("repo.migrate", target, None, plan.to_dict(), "refused", 0.0, str(err))
        return fail(args, str(err), EXIT_REFUSED)
    if not agreed:
        core.audit.record("repo.migrate", target, None, plan.to_dict(), "declined", 0.0, "not confirmed")
        return fail(args, "not confirmed: nothing changed", EXIT_REFUSED)
    bar = ProgressLine(enabled=not args.json)
    try:
        result = core.migrations.migrate(name, progress=bar)
    finally:
        bar.close()
    if args.json:
        emit_json({"ok": True, "plan": plan.to_dict(), "result": result.to_dict()})
        return EXIT_OK
    show(
        f"Repository {name!r} is format 2: {result.chunks_copied} chunk{'' if result.chunks_copied == 1 else 's'} copied "
        f"into {result.packs_written} pack{'' if result.packs_written == 1 else 's'}, {result.chunk_files_deleted} chunk "
        f"file{'' if result.chunk_files_deleted == 1 else 's'} deleted, in {result.duration:.1f} s."
    )
    if result.damaged:
        show(
            f"  {len(result.damaged)} chunk file(s) failed their check and were not copied (kept as .bad files); "
            "run `hvtui verify` to see which restore points they break"
        )
    return EXIT_OK


@reported
def run_key_list(args: argparse.Namespace, core: Core) -> int:
    rc, slots = core.repository_keys.slots(args.name)
    if args.json:
        emit_json({"ok": True, "repository": rc.name, "key_slots": [s.to_dict() for s in slots]})
    else:
        show(f"{rc.name}: {len(slots)} key slot{'' if len(slots) == 1 else 's'}")
        for slot in slots:
            show(_slot_line(slot.to_dict()))
    return EXIT_OK


@reported
def run_key_add(args: argparse.Namespace, core: Core) -> int:
    rc, _slots = core.repository_keys.slots(args.name)
    reason = core.backups.read_only_reason()
    passphrase = "" if reason else new_passphrase(f"new passphrase for repository {rc.name}", args.new_passphrase_env)
    slot = core.repository_keys.add(rc.name, passphrase)
    if args.json:
        emit_json({"ok": True, "repository": rc.name, "slot": slot})
    else:
        show(f"Added key slot {slot} to repository {rc.name!r}: the new passphrase opens it too.")
    return EXIT_OK


@reported
def run_key_remove(args: argparse.Namespace, core: Core) -> int:
    rc, slots = core.repository_keys.slots(args.name)
    others = [s for s in slots if s.slot != args.slot and not s.problem]
    if core.backups.read_only_reason() is None and any(s.slot == args.slot for s in slots) and others:
        question = (
            f"Remove key slot {args.slot} of repository {rc.name!r}? The passphrase it holds will no longer open "
            f"the repository; {len(others)} other key slot{'' if len(others) == 1 else 's'} remain{'s' if len(others) == 1 else ''}. "
            "The data is not touched."
        )
        audit_args = {"repository": rc.name, "slot": args.slot}
        try:
            agreed = confirm(question, args.yes)
        except RefusedError as err:
            core.audit.record("repo.key.remove", f"repository:{rc.name}", None, audit_args, "refused", 0.0, str(err))
            return fail(args, str(err), EXIT_REFUSED)
        if not agreed:
            core.audit.record("repo.key.remove", f"repository:{rc.name}", None, audit_args, "declined", 0.0, "not confirmed")
            return fail(args, "not confirmed: nothing changed", EXIT_REFUSED)
    core.repository_keys.remove(rc.name, args.slot)  # refuses read-only, an unknown slot and the last one
    if args.json:
        emit_json({"ok": True, "repository": rc.name, "removed": args.slot})
    else:
        show(f"Removed key slot {args.slot} of repository {rc.name!r}.")
    return EXIT_OK


@reported
def run_locks(args: argparse.Namespace, core: Core) -> int:
    cleared: list[str] = []
    if args.clear_stale:
        _rc, cleared = core.repository_locks.clear_stale(args.name)
    rc, states = core.repository_locks.records(args.name)
    if args.json:
        emit_json({"ok": True, "repository": rc.name, "cleared": cleared, "locks": [s.to_dict() for s in states]})
        return EXIT_OK
    for line in cleared:
        show(line[0].upper() + line[1:] + ".")
    if args.clear_stale and not cleared:
        show("No stale lock record: nothing cleared.")
    stale = sum(1 for s in states if s.stale)
    hint = f" ({stale} stale: `hvtui repo locks {rc.name} --clear-stale` removes them)" if stale else ""
    show(f"{rc.name}: {len(states)} lock record{'' if len(states) == 1 else 's'}{hint}")
    for state in states:
        show(f"  {state.line()}")
    return EXIT_OK
