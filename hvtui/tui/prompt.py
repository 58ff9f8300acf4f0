"""The console's commands: the `:` prompt (k9s-style) and the command palette's entries.

``PromptCommandsMixin`` is one of the parts ``hvtui.tui.app.HvtuiApp`` is made of.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import SystemCommand
from textual.screen import Screen

VIEWS = ("vms", "findings", "jobs", "changes", "schedules", "repos")

# (command, arguments, what it does) for `:` and the help screen.
PROMPT_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("vms", "[FILTER]", "the VM list, optionally filtered"),
    ("findings", "[FILTER]", "all findings, worst and oldest first, optionally filtered"),
    ("jobs", "", "backup and restore jobs: progress, cancel, retry, resume"),
    ("changes", "", "change windows: roll back, promote or discard them"),
    ("schedules", "", "backup schedules: next and last run, results per VM, missed runs; run one now"),
    ("repos", "", "repositories: backend, format, encryption, size, points, last backup and copy"),
    ("change", "open …", "checkpoint all VMs of a host group or host: open --group G (or --host H)"),
    ("vm", "NAME", "open a VM's detail (host/name or name)"),
    ("theme", "[NAME]", "switch the theme; without a name, list the themes"),
    ("refresh", "", "refresh the inventory now"),
    ("help", "", "every key binding"),
    ("q", "", "quit (asks when an action is running)"),
)
COMMAND_ALIASES = {
    "vm": "vm",
    "vms": "vms",
    "virtualmachines": "vms",
    "f": "findings",
    "finding": "findings",
    "findings": "findings",
    "jobs": "jobs",
    "changes": "changes",
    "change": "changes",
    "schedules": "schedules",
    "schedule": "schedules",
    "sched": "schedules",
    "repos": "repos",
    "repo": "repos",
    "repositories": "repos",
    "job": "jobs",
    "theme": "theme",
    "themes": "theme",
    "skin": "theme",
    "refresh": "refresh",
    "r": "refresh",
    "help": "help",
    "?": "help",
    "h": "help",
    "q": "quit",
    "q!": "quit",
    "quit": "quit",
    "exit": "quit",
}


class PromptCommandsMixin:
    """What `:` and the command palette run (mixed into the app)."""

    def command_help(self) -> list[tuple[str, str]]:
        return [(f"{name} {args}".strip(), description) for name, args, description in PROMPT_COMMANDS]

    def command_suggestions(self) -> list[str]:
        out = [name for name, _args, _description in PROMPT_COMMANDS]
        out.extend(f"theme {name}" for name in sorted(self.available_themes))
        return out

    def run_command(self, text: str) -> None:
        words = text.strip().lstrip(":").split(maxsplit=1)
        if not words:
            return
        name = COMMAND_ALIASES.get(words[0].casefold())
        argument = words[1].strip() if len(words) > 1 else ""
        if name is None:
            known = ", ".join(command for command, _args, _description in PROMPT_COMMANDS)
            self.notify(f"unknown command {words[0]!r} (commands: {known})", title="Command", severity="error")
            return
        if name == "changes" and argument.split()[:1] == ["open"]:
            self._open_change_window_on(argument)
        elif name in VIEWS:
            self.show_view(name, argument or None)
        elif name == "vm":
            self._open_vm_by_name(argument)
        elif name == "theme":
            if argument:
                self.switch_theme(argument)
            else:
                self.notify(", ".join(sorted(self.available_themes)), title=f"Themes (current: {self.theme})", timeout=10)
        elif name == "refresh":
            self.request_refresh()
        elif name == "help":
            self.action_help()
        elif name == "quit":
            self.run_worker(self.action_quit(), exclusive=False)

    def _open_change_window_on(self, argument: str) -> None:
        """``:change open --group G`` or ``--host H``: "checkpoint all" on that group's or host's VMs."""
        usage = "usage: change open --group G (or --host H): checkpoint all VMs of a host group or host"
        words = argument.split()
        if self.snapshot is None or len(words) != 3 or words[1] not in ("--group", "--host"):
            self.notify(usage, title="Command", severity="error", markup=False)
            return
        option, wanted = words[1], words[2].casefold()
        hosts = self.snapshot.inventory.hosts
        if option == "--group":
            chosen = [h for h in hosts if (h.group or "").casefold() == wanted]
            known = sorted({h.group for h in hosts if h.group})
            what = f"host group {words[2]!r}"
        else:
            chosen = [h for h in hosts if h.name.casefold() == wanted]
            known = sorted(h.name for h in hosts)
            what = f"host {words[2]!r}"
        vms = [vm for host in chosen for vm in host.vms]
        if not vms:
            where = "no such group or host" if not chosen else "no VMs on it (or it cannot be read)"
            self.notify(
                f"{what}: {where} (known: {', '.join(known) or 'none'})", title="Command", severity="error", markup=False
            )
            return
        self.start_change_window(vms)

    def _open_vm_by_name(self, wanted: str) -> None:
        if self.snapshot is None or not wanted:
            self.notify("usage: vm NAME (or host/NAME)", title="Command", severity="error")
            return
        host, _, name = wanted.rpartition("/")
        matches = [
            vm
            for vm in self.snapshot.inventory.vms
            if vm.name.casefold() == name.casefold() and (not host or vm.host.casefold() == host.casefold())
        ]
        if len(matches) == 1:
            self.open_vm(matches[0].host, matches[0].id)
        elif matches:
            where = ", ".join(f"{vm.host}/{vm.name}" for vm in matches)
            self.notify(f"{wanted!r} is on several hosts: {where}; use host/NAME", title="Command", severity="error")
        else:
            self.notify(f"no VM {wanted!r}", title="Command", severity="error")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("VMs", "The VM list (:vms)", lambda: self.show_view("vms"))
        yield SystemCommand("Findings", "All sprawl findings (:findings)", lambda: self.show_view("findings"))
        yield SystemCommand("Jobs", "Backup and restore jobs (:jobs)", lambda: self.show_view("jobs"))
        yield SystemCommand("Refresh", "Refresh the inventory now", self.request_refresh)
        yield SystemCommand("hvtui keys", "Every key binding (?)", self.action_help)
        for name in self.hvtui_themes:
            yield SystemCommand(f"Theme: {name}", f"Switch to the {name} theme", lambda n=name: self.switch_theme(n))
