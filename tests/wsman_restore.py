"""The loopback server's answers to ``restore.prepare`` and ``restore.import`` from a lab host,
as the templates would answer from Hyper-V.

Host paths under a drive letter are mapped to local folders (the same map the test's
``RemoteFiles`` uses), so the files the client wrote over "SMB" are the ones imported here:
the lab's own restore registers them (its ``.vmcx`` is JSON), then the folder is removed.
The inventory's volumes are renamed to their drive letters (``host_paths``) and the free space
restore.prepare checks is the lab volume's, as the inventory reports it; ``free_bytes`` overrides
it for the no-space drill.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path, PureWindowsPath
from typing import Any

from hvtui.errors import HostError


def failure(kind: str, message: str) -> dict:
    return {"ok": False, "error": message, "fqid": f"HvtuiKind-{kind}", "kind": kind}


class LabRestoreOps:
    def __init__(self, lab: Any, drives: dict[str, Path]) -> None:
        self.lab = lab
        self.drives = {drive.upper().rstrip("\\"): Path(root) for drive, root in drives.items()}
        self.free_bytes: int | None = None
        self.imported: list[dict] = []

    def local(self, host_path: str) -> Path | None:
        win = PureWindowsPath(host_path)
        root = self.drives.get(win.drive.upper())
        if root is None or not win.root or ".." in win.parts:
            return None
        return root.joinpath(*win.parts[1:])

    def host_paths(self, doc: dict) -> dict:
        """The inventory document with each mapped folder's volume under its drive letter."""
        for volume in doc.get("host", {}).get("volumes", []):
            for drive, root in self.drives.items():
                if Path(volume["path"]) == root:
                    volume["path"] = drive + "\\"
        return doc

    def handle(self, op: str, args: dict) -> dict:
        if args.get("v") != 1:
            return failure("argument", f"This script speaks wire version 1, not {args.get('v')}")
        if op == "restore.prepare":
            return self.prepare(args)
        return self.import_(args)

    def prepare(self, args: dict) -> dict:
        folder = self.local(str(args.get("folder")))
        needed = args.get("bytes")
        if folder is None or not isinstance(needed, int) or needed < 0:
            return failure("argument", "restore.prepare needs a local folder and a byte count")
        free = self.free_bytes if self.free_bytes is not None else self.lab.inventory(30.0).facts.volumes[0].free
        if math.ceil(needed * 1.1) > free:
            return failure("space", f"Not enough free space on D:\\: {needed} bytes to write, {free} free")
        folder.mkdir(parents=True, exist_ok=True)
        return {"ok": True, "free": free}

    def import_(self, args: dict) -> dict:
        self.imported.append(dict(args))
        folder = self.local(str(args.get("folder")))
        config_path = self.local(str(args.get("config_path")))
        if folder is None or config_path is None or not config_path.is_file():
            return failure("not-found", f"No restored VM configuration at {args.get('config_path')}")
        try:
            config = json.loads(config_path.read_bytes())
        except ValueError as err:
            return failure("incompatible", f"Cannot import the restored VM: the configuration is unreadable ({err})")
        mode = args.get("mode")
        try:
            # flatten: the lab merges each chain on commit, as removing the copy's checkpoints does.
            keep = not (mode == "new" and args.get("flatten") is True)
            target = self.lab.prepare_restore(
                config, mode, vm_id=args.get("vm_id"), new_name=args.get("new_name"), keep_checkpoints=keep
            )
        except HostError as err:
            kind = "state" if "turn it off" in err.detail else "incompatible"
            return failure(kind, f"Cannot import the restored VM: {err.detail}")
        for entry in folder.iterdir():
            os.rename(entry, target.staging_dir / entry.name)
        try:
            vm = target.commit()
        except HostError as err:
            return failure("disk-check", err.detail)
        shutil.rmtree(folder)
        return {"ok": True, "vm_id": vm.id, "warnings": []}
