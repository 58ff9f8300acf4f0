"""A loopback WS-Management (WinRS) server, enough of it for real pywinrm.

It speaks Create, Command, Send, Receive (with ``w:TimedOut`` faults while an answer is not
ready), Signal and Delete over HTTP with Basic authentication (HTTP 401 on bad
credentials), echoing ``RelatesTo``.  It does not run PowerShell: it decodes the bootstrap's
standard input (``<script> \\0\\0\\0\\0 <json>``), reads ``op`` and the arguments, and answers
from a backend rendered into the contract's JSON:

- ``LabBackend`` wraps a lab host (``hvtui.hosts.lab``): inventory via
  ``hvtui.wire.snapshot_to_wire``, checkpoint operations via the lab host's methods, so the
  same estate can be read through both backends and compared;
- ``MemoryBackend`` keeps a small in-memory estate of wire records (names of any kind,
  including the ones the lab refuses, such as names with newlines).

Everything received is recorded (``server.commands``) so tests can assert on it, and
``server.faults`` injects faults: slow answers, time-outs forever, HTTP 401, quota faults,
busy Sends, a hanging HTTP server, and any answer a test builds (malformed JSON, CLIXML on
standard error, PS 5.1 shapes, failure documents with a FullyQualifiedErrorId).
``BlackholeServer`` accepts TCP connections and never answers.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

import pytest

from hvtui.errors import HostError, NotFoundError
from hvtui.wire import (
    CONTROLLER_BY_INT,
    HEARTBEAT_BY_INT,
    SNAPSHOT_TYPE_BY_INT,
    VHD_TYPE_BY_INT,
    VM_CHECKPOINT_TYPE_BY_INT,
    VM_STATE_BY_INT,
    checkpoint_to_wire,
    parse_datetime,
    snapshot_to_wire,
)

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "wmie": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
STATE_DONE = f"{SHELL_URI}/CommandState/Done"
STATE_RUNNING = f"{SHELL_URI}/CommandState/Running"

FAULT_TIMED_OUT = 2150858793
FAULT_QUOTA_MAX_OPERATIONS = 2150859174
FAULT_BUSY = 170

BEGIN = "<<<HVTUI-BEGIN>>>"
END = "<<<HVTUI-END>>>"
SEPARATOR = b"\0\0\0\0"

# What a real host prints around the document (ignored by the client).
MODULE_NOISE = "Preparing modules for first use.\r\n"
CLIXML_PROGRESS = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.'
    "</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj></Objs>"
)


# -- answers ------------------------------------------------------------------------------------
@dataclass
class Answer:
    stdout: bytes
    stderr: bytes = b""
    exit_code: int = 0
    hang: bool = False  # the script never ends: every Receive times out until the client gives up


def document_answer(doc: object, exit_code: int | None = None, stderr: bytes = b"") -> Answer:
    """An answer carrying one JSON document between the markers, as the templates write it."""
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    if exit_code is None:
        exit_code = 0 if isinstance(doc, dict) and doc.get("ok") is True else 1
    stdout = f"{MODULE_NOISE}{BEGIN}\r\n{text}\r\n{END}\r\n".encode()
    return Answer(stdout, stderr, exit_code)


def raw_answer(body: str, exit_code: int = 0, stderr: bytes = b"") -> Answer:
    """Arbitrary text between the markers (malformed JSON and the like)."""
    return Answer(f"{BEGIN}\r\n{body}\r\n{END}\r\n".encode(), stderr, exit_code)


def failure_answer(message: str, fqid: str) -> Answer:
    return document_answer({"ok": False, "error": message, "fqid": fqid}, exit_code=1)


def clixml_error(message: str) -> bytes:
    escaped = escape(message).replace("\n", "_x000A_")
    return (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{escaped}_x000D__x000A_</S></Objs>'
    ).encode()


# -- Windows PowerShell 5.1 shapes ------------------------------------------------------------------
def _name_to_int(table: dict[int, str]) -> dict[str, int]:
    return {name: number for number, name in table.items()}


def _ms_date(text: str, offset: str = "") -> str:
    when: datetime = parse_datetime(text)
    millis = int(when.timestamp() * 1000)
    return f"/Date({millis}{offset})/"


def _ps51_list(items: list, wrap: bool) -> object:
    if not items:
        return None  # empty output where a list was expected
    if len(items) == 1:
        return items[0]  # the pipeline unrolled a one-element array
    return {"value": items, "Count": len(items)} if wrap else items


def ps51_shapes(doc: dict) -> dict:
    """The inventory document as Windows PowerShell 5.1 would emit it by accident.

    Enums become integers where they have a stable value, dates become ``/Date(ms)/`` (the
    host clock as the DisplayHint object), one-element lists lose their brackets, empty
    lists become null, and longer lists get the ``{"value": [...], "Count": n}`` wrapper.
    Dates keep millisecond precision only, as in 5.1.
    """
    doc = json.loads(json.dumps(doc))
    states = _name_to_int(VM_STATE_BY_INT)
    snap_types = _name_to_int(SNAPSHOT_TYPE_BY_INT)
    vm_cp_types = _name_to_int(VM_CHECKPOINT_TYPE_BY_INT)
    heartbeats = _name_to_int(HEARTBEAT_BY_INT)
    controllers = _name_to_int(CONTROLLER_BY_INT)
    vhd_types = _name_to_int(VHD_TYPE_BY_INT)
    facts = doc["host"]
    facts["now"] = {"value": _ms_date(facts["now"]), "DisplayHint": 2, "DateTime": "Tuesday, 24 November 2026"}
    facts["volumes"] = _ps51_list(facts["volumes"], wrap=True)
    for vm in doc["vms"]:
        vm["state"] = states.get(vm["state"], vm["state"])
        vm["checkpoint_type"] = vm_cp_types.get(vm["checkpoint_type"], vm["checkpoint_type"])
        if vm["heartbeat"] in heartbeats:
            vm["heartbeat"] = heartbeats[vm["heartbeat"]]
        for cp in vm["checkpoints"]:
            cp["type"] = snap_types.get(cp["type"], cp["type"])
            cp["created"] = _ms_date(cp["created"], "+0100")
        for disk in vm["disks"]:
            disk["controller"] = controllers.get(disk["controller"], disk["controller"])
            for link in disk["chain"]:
                link["vhd_type"] = vhd_types.get(link["vhd_type"], link["vhd_type"])
            disk["chain"] = _ps51_list(disk["chain"], wrap=False)
        vm["checkpoints"] = _ps51_list(vm["checkpoints"], wrap=True)
        vm["disks"] = _ps51_list(vm["disks"], wrap=False)
        vm["stray_disk_files"] = _ps51_list(vm["stray_disk_files"], wrap=False)
    doc["vms"] = _ps51_list(doc["vms"], wrap=True)
    return doc


# -- backends -----------------------------------------------------------------------------------
FQID_VM_NOT_FOUND = "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
FQID_CHECKPOINT_NOT_FOUND = "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot"


class Backend:
    def handle(self, op: str, args: dict) -> dict | None:
        """The operation's document; None: the script never ends (the client has to give up)."""
        raise NotImplementedError


class LabBackend(Backend):
    """Answers from a lab host, as the templates would from the real one."""

    def __init__(self, lab_host: Any, restore: Any = None) -> None:
        self.lab = lab_host
        self.restore = restore  # wsman_restore.LabRestoreOps: answers restore.prepare and restore.import

    def handle(self, op: str, args: dict) -> dict:
        lab = self.lab
        if op.startswith("restore.") and self.restore is not None:
            return self.restore.handle(op, args)
        try:
            if op == "inventory":
                doc = snapshot_to_wire(lab.inventory(30.0))
                return self.restore.host_paths(doc) if self.restore is not None else doc
            if op == "checkpoint.create":
                cp = lab.create_checkpoint(args["vm_id"], args["name"], args["checkpoint_type"])
                return {"ok": True, "checkpoint": checkpoint_to_wire(cp)}
            if op == "checkpoint.apply":
                lab.apply_checkpoint(args["vm_id"], args["checkpoint_id"])
                return {"ok": True, "vm_state": lab.vm(args["vm_id"]).state}
            if op == "checkpoint.remove":
                vm = lab.vm(args["vm_id"])
                ids = (
                    [cp.id for cp in vm.subtree(args["checkpoint_id"])] if args["subtree"] else [args["checkpoint_id"]]
                )
                lab.remove_checkpoint(args["vm_id"], args["checkpoint_id"], subtree=args["subtree"])
                return {"ok": True, "removed": ids, "merge_pending": False}
            if op == "checkpoint.rename":
                lab.rename_checkpoint(args["vm_id"], args["checkpoint_id"], args["new_name"])
                cp = lab.vm(args["vm_id"]).checkpoint(args["checkpoint_id"])
                return {"ok": True, "checkpoint": checkpoint_to_wire(cp)}
            if op == "checkpoint.type":
                # The lab takes any checkpoint type without switching the VM's: nothing to put back.
                return {"ok": True, "checkpoint_type": lab.vm(args["vm_id"]).checkpoint_type, "restored": False}
        except NotFoundError as err:
            fqid = FQID_CHECKPOINT_NOT_FOUND if "checkpoint" in err.detail.lower() else FQID_VM_NOT_FOUND
            return {"ok": False, "error": err.detail, "fqid": fqid}
        except HostError as err:
            return {"ok": False, "error": err.detail, "fqid": "HvtuiLabError"}
        return {"ok": False, "error": f"unknown op {op}", "fqid": "HvtuiUnknownOp"}


class MemoryBackend(Backend):
    """A small estate of wire records, held in memory; names are stored exactly as given."""

    def __init__(self, host_name: str = "HV-MEM", now: str = "2026-11-24T17:00:00.0000000Z") -> None:
        self.facts = {
            "name": host_name,
            "os": "Windows Server 2022 Datacenter",
            "build": "20348",
            "now": now,
            "logical_processors": 16,
            "memory_bytes": 128 << 30,
            "volumes": [{"path": "D:\\", "label": "VMs", "size": 2 << 40, "free": 1 << 40}],
        }
        self.vms: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.merge_pending = False  # removals answer that the host is still merging
        # A create that has to switch the VM's checkpoint type switches it and never ends, as a
        # script whose shell is terminated mid-Checkpoint-VM (its finally never runs).
        self.hang_creates_after_switch = False
        self.refuse_type_restore: str | None = None  # Set-VM's error message when putting the type back

    def add_vm(self, name: str, state: str = "Running") -> str:
        vm_id = str(uuid.uuid4())
        folder = f"D:\\VMs\\{name}"
        base = f"{folder}\\{name}.vhdx"
        self.vms[vm_id] = {
            "id": vm_id,
            "name": name,
            "state": state,
            "status": "Operating normally",
            "cpu_usage": 3,
            "memory_assigned": 4 << 30,
            "uptime_seconds": 3600,
            "heartbeat": "OkApplicationsHealthy",
            "generation": 2,
            "version": "10.0",
            "checkpoint_type": "Production",
            "is_clustered": False,
            "path": folder,
            "checkpoint_path": folder,
            "parent_checkpoint_id": None,
            "checkpoints": [],
            "disks": [
                {
                    "controller": "SCSI",
                    "controller_number": 0,
                    "controller_location": 0,
                    "path": base,
                    "chain": [
                        {
                            "path": base,
                            "vhd_type": "Dynamic",
                            "file_size": 10 << 30,
                            "size": 127 << 30,
                            "parent_path": None,
                        }
                    ],
                }
            ],
            "stray_disk_files": [],
        }
        return vm_id

    def handle(self, op: str, args: dict) -> dict | None:
        with self.lock:
            if op == "inventory":
                return {"ok": True, "host": self.facts, "vms": list(self.vms.values())}
            vm = self.vms.get(args.get("vm_id", ""))
            if vm is None:
                return {
                    "ok": False,
                    "error": f'Hyper-V was unable to find a virtual machine with id "{args.get("vm_id")}".',
                    "fqid": FQID_VM_NOT_FOUND,
                }
            if op == "checkpoint.type":
                return self._checkpoint_type(vm, args)
            if op == "checkpoint.create":
                refusal = self._check_type(vm, args)
                if refusal is not None:
                    return refusal
                if self.hang_creates_after_switch and _switches(vm["checkpoint_type"], args["checkpoint_type"]):
                    vm["checkpoint_type"] = args["checkpoint_type"]  # Set-VM ran; the finally never will
                    return None
                name = args["name"] if args["name"] is not None else f"{vm['name']} - (11/24/2026 - 5:00:00 PM)"
                cp = {
                    "id": str(uuid.uuid4()),
                    "name": name,
                    "type": args["checkpoint_type"],
                    "created": self.facts["now"],
                    "parent_id": vm["parent_checkpoint_id"],
                    "is_automatic": False,
                }
                vm["checkpoints"].append(cp)
                vm["parent_checkpoint_id"] = cp["id"]
                return {"ok": True, "checkpoint": cp}
            cp = next((c for c in vm["checkpoints"] if c["id"] == args.get("checkpoint_id")), None)
            if cp is None:
                return {
                    "ok": False,
                    "error": f"Unable to find a snapshot matching the given criteria: {args.get('checkpoint_id')}",
                    "fqid": FQID_CHECKPOINT_NOT_FOUND,
                }
            if op == "checkpoint.rename":
                cp["name"] = args["new_name"]
                return {"ok": True, "checkpoint": cp}
            if op == "checkpoint.apply":
                vm["parent_checkpoint_id"] = cp["id"]
                vm["state"] = "Off"
                return {"ok": True, "vm_state": "Off"}
            if op == "checkpoint.remove":
                removed = [cp["id"]]
                if args["subtree"]:
                    index = 0
                    while index < len(removed):
                        removed += [c["id"] for c in vm["checkpoints"] if c["parent_id"] == removed[index]]
                        index += 1
                for c in vm["checkpoints"]:
                    if c["parent_id"] == cp["id"] and c["id"] not in removed:
                        c["parent_id"] = cp["parent_id"]
                vm["checkpoints"] = [c for c in vm["checkpoints"] if c["id"] not in removed]
                if vm["parent_checkpoint_id"] in removed:
                    vm["parent_checkpoint_id"] = cp["parent_id"]
                return {"ok": True, "removed": removed, "merge_pending": self.merge_pending}
        return {"ok": False, "error": f"unknown op {op}", "fqid": "HvtuiUnknownOp"}

    @staticmethod
    def _check_type(vm: dict, args: dict) -> dict | None:
        """checkpoint_create.ps1's checks before it switches the type."""
        current, expected = vm["checkpoint_type"], args.get("expected_type")
        if args["checkpoint_type"] == "Recovery":
            return None
        if current == "Disabled":
            return {
                "ok": False,
                "error": f"Checkpoints are disabled for VM {vm['name']}",
                "fqid": "HvtuiCheckpointsDisabled",
            }
        if expected is not None and expected != current:
            return {
                "ok": False,
                "error": f"The checkpoint type of VM {vm['name']} changed to {current} meanwhile "
                f"(it was {expected}); try again",
                "fqid": "HvtuiCheckpointTypeChanged",
            }
        return None

    def _checkpoint_type(self, vm: dict, args: dict) -> dict:
        """checkpoint_type.ps1: read the type; put it back only while it is still restore_from."""
        restored = False
        if args.get("restore_to") and vm["checkpoint_type"] == args.get("restore_from"):
            if self.refuse_type_restore is not None:
                return {
                    "ok": False,
                    "error": self.refuse_type_restore,
                    "fqid": "InvalidState,Microsoft.HyperV.PowerShell.Commands.SetVM",
                }
            vm["checkpoint_type"] = args["restore_to"]
            restored = True
        return {"ok": True, "checkpoint_type": vm["checkpoint_type"], "restored": restored}


def _switches(vm_type: str, wanted: str) -> bool:
    """checkpoint_create.ps1's ``$switchType``."""
    if wanted not in ("Standard", "Production"):
        return False
    return not (vm_type == wanted or (wanted == "Production" and vm_type == "ProductionOnly"))


# -- what the server saw -------------------------------------------------------------------------
@dataclass
class ReceivedCommand:
    shell_id: str
    command_id: str
    command_line: str
    bootstrap: str | None = None  # the decoded -EncodedCommand
    stdin: bytes = b""
    stdin_done: bool = False
    script: str | None = None
    arguments_json: str | None = None
    arguments: dict | None = None
    answer: Answer | None = None
    ready_at: float = 0.0
    sent_offset: int = 0
    signalled: bool = False

    @property
    def op(self) -> str | None:
        return (self.arguments or {}).get("op")


@dataclass
class Faults:
    """Knobs a test turns; all off by default."""

    unauthorized: bool = False  # every request gets HTTP 401
    delay: float = 0.0  # the answer is ready this long after the last stdin
    op_delay: dict[str, float] = field(default_factory=dict)  # and this much longer for these ops
    never_answer: bool = False  # every Receive times out, forever
    hang_http: bool = False  # requests are read and never answered (the socket stays open)
    quota_after: int | None = None  # a Command on a shell that already ran this many gets a quota fault
    busy_sends: int = 0  # this many Sends are refused with fault 170 (ERROR_BUSY) first
    chunk_size: int | None = None  # stdout delivered over several Receives of this many bytes
    respond: Callable[[str, dict], Answer | None] | None = None  # custom answers (None: use the backend)
    ps51: bool = False  # render inventory documents with the PS 5.1 shapes
    clixml_progress: bool = False  # prefix standard error with a CLIXML progress record


class WSManServer:
    """Start with ``WSManServer(backend).start()``; ``endpoint`` has the port; ``stop()`` at the end."""

    def __init__(
        self,
        backend: Backend | None = None,
        username: str = "hvtui",
        password: str = "s3cret!",
        operation_timeout_cap: float = 2.0,
        ssl_context: Any = None,
    ) -> None:
        self.backend = backend or MemoryBackend()
        self.ssl_context = ssl_context  # serve HTTPS with this ssl.SSLContext
        self.username = username
        self.password = password
        # Receives wait at most this long before a TimedOut fault (keeps tests quick).
        self.operation_timeout_cap = operation_timeout_cap
        self.faults = Faults()
        self.lock = threading.Lock()
        self.commands: list[ReceivedCommand] = []
        self.actions: list[str] = []
        self.shells: dict[str, int] = {}  # open shell id -> commands run in it
        self.shells_created = 0
        self.shells_deleted = 0
        self.quota_faults = 0
        self.busy_faults = 0
        self.unauthorized_requests = 0
        self.raw_requests: list[bytes] = []
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> WSManServer:
        server = self

        class Handler(_Handler):
            wsman = server

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.ssl_context is not None:
            httpd.socket = self.ssl_context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> WSManServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- views for tests --------------------------------------------------------------------
    def ops(self) -> list[str | None]:
        with self.lock:
            return [c.op for c in self.commands]

    def commands_for(self, op: str) -> list[ReceivedCommand]:
        with self.lock:
            return [c for c in self.commands if c.op == op]

    # -- protocol ----------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if self.faults.unauthorized or not header or not header.startswith("Basic "):
            return False
        try:
            raw = base64.b64decode(header[6:])
        except ValueError:
            return False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # requests encodes Basic credentials as Latin-1
        user, _, password = text.partition(":")
        return user == self.username and password == self.password

    def answer(self, command: ReceivedCommand) -> Answer:
        """Decode the bootstrap's stdin and build the answer (from the backend or a fault)."""
        stdin = command.stdin
        if SEPARATOR not in stdin:
            return failure_answer("hvtui bootstrap: no separator on standard input", "HvtuiBootstrap")
        script, _, raw_args = stdin.partition(SEPARATOR)
        command.script = script.decode("utf-8")
        command.arguments_json = raw_args.decode("utf-8")
        try:
            command.arguments = json.loads(command.arguments_json)
        except ValueError:
            return Answer(b"", clixml_error("ConvertFrom-Json : Invalid JSON primitive"), 1)
        op = command.op or ""
        answer = self.faults.respond(op, command.arguments) if self.faults.respond else None
        if answer is None:
            doc = self.backend.handle(op, command.arguments)
            if doc is None:  # the backend's script never ends
                return Answer(b"", hang=True)
            if self.faults.ps51 and op == "inventory" and doc.get("ok") is True:
                doc = ps51_shapes(doc)
            answer = document_answer(doc)
        if self.faults.clixml_progress:
            answer = Answer(answer.stdout, CLIXML_PROGRESS.encode() + answer.stderr, answer.exit_code)
        return answer


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    header = (
        f"<a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
    )
    namespaces = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NS.items())
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xml:lang="en-US" {namespaces}>'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault(relates_to: str, code: int, reason: str, subcode: str = "w:InternalError") -> bytes:
    body = (
        f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(reason)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault Code="{code}" Machine="127.0.0.1"><f:Message>{escape(reason)}</f:Message>'
        f"</f:WSManFault><wmie:MSFT_WmiError><wmie:error_Code>{code}</wmie:error_Code></wmie:MSFT_WmiError>"
        "</s:Detail></s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    wsman: WSManServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body:
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server = self.wsman
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if server.faults.hang_http:
            server._stop.wait()  # hold the request until the server stops; never answer
            self.close_connection = True
            return
        if not server.authorized(self.headers.get("Authorization")):
            with server.lock:
                server.unauthorized_requests += 1
            self._send(401, headers={"WWW-Authenticate": 'Basic realm="WSMAN"'})
            return
        with server.lock:
            server.raw_requests.append(body)
        root = ET.fromstring(body)
        action = root.findtext(".//a:Action", namespaces=NS) or ""
        message_id = root.findtext(".//a:MessageID", namespaces=NS) or ""
        shell_id = None
        for selector in root.iterfind(".//w:Selector", NS):
            if selector.get("Name") == "ShellId":
                shell_id = selector.text
        timeout_text = root.findtext(".//w:OperationTimeout", namespaces=NS) or "PT20S"
        operation_timeout = float(timeout_text.removeprefix("PT").removesuffix("S") or 20)
        with server.lock:
            server.actions.append(action.rsplit("/", 1)[-1])
        if action == ACTION_CREATE:
            self._create(message_id)
        elif action == ACTION_DELETE:
            with server.lock:
                server.shells.pop(shell_id or "", None)
                server.shells_deleted += 1
            self._send(200, _envelope(f"{ACTION_DELETE}Response", message_id, ""))
        elif action == f"{SHELL_URI}/Command":
            self._command(root, message_id, shell_id or "")
        elif action == f"{SHELL_URI}/Send":
            self._stdin(root, message_id)
        elif action == f"{SHELL_URI}/Receive":
            self._receive(root, message_id, operation_timeout)
        elif action == f"{SHELL_URI}/Signal":
            command_id = root.find(".//rsp:Signal", NS).get("CommandId")  # type: ignore[union-attr]
            with server.lock:
                for command in server.commands:
                    if command.command_id == command_id:
                        command.signalled = True
            self._send(200, _envelope(f"{SHELL_URI}/SignalResponse", message_id, "<rsp:SignalResponse/>"))
        else:
            self._send(500, _fault(message_id, 2150858817, f"unsupported action {action}", "w:ActionNotSupported"))

    def _create(self, message_id: str) -> None:
        server = self.wsman
        shell_id = str(uuid.uuid4()).upper()
        with server.lock:
            server.shells[shell_id] = 0
            server.shells_created += 1
        body = (
            "<x:ResourceCreated><a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"
            "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
            "<rsp:ResourceUri>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</rsp:ResourceUri>"
            "<rsp:State>Connected</rsp:State></rsp:Shell>"
        )
        self._send(200, _envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", message_id, body))

    def _command(self, root: ET.Element, message_id: str, shell_id: str) -> None:
        server = self.wsman
        command_line = root.findtext(".//rsp:Command", namespaces=NS) or ""
        with server.lock:
            if shell_id not in server.shells:
                self._send(500, _fault(message_id, 2150858843, "The shell was not found.", "w:InvalidSelectors"))
                return
            quota = server.faults.quota_after
            if quota is not None and server.shells[shell_id] >= quota:
                server.quota_faults += 1
                self._send(
                    500,
                    _fault(
                        message_id,
                        FAULT_QUOTA_MAX_OPERATIONS,
                        "The WS-Management service cannot process the request. This user is allowed a maximum "
                        "number of concurrent operations, which has been exceeded.",
                        "w:QuotaLimit",
                    ),
                )
                return
            server.shells[shell_id] += 1
            command = ReceivedCommand(
                shell_id=shell_id, command_id=str(uuid.uuid4()).upper(), command_line=command_line
            )
            parts = command_line.split()
            if "-EncodedCommand" in parts and parts.index("-EncodedCommand") + 1 < len(parts):
                encoded = parts[parts.index("-EncodedCommand") + 1]
                command.bootstrap = base64.b64decode(encoded).decode("utf-16-le")
            server.commands.append(command)
        body = f"<rsp:CommandResponse><rsp:CommandId>{command.command_id}</rsp:CommandId></rsp:CommandResponse>"
        self._send(200, _envelope(f"{SHELL_URI}/CommandResponse", message_id, body))

    def _find(self, command_id: str | None) -> ReceivedCommand | None:
        with self.wsman.lock:
            return next((c for c in self.wsman.commands if c.command_id == command_id), None)

    def _stdin(self, root: ET.Element, message_id: str) -> None:
        server = self.wsman
        with server.lock:
            if server.faults.busy_sends > 0:
                server.faults.busy_sends -= 1
                server.busy_faults += 1
                busy = True
            else:
                busy = False
        if busy:
            self._send(500, _fault(message_id, FAULT_BUSY, "The requested resource is in use."))
            return
        stream = root.find(".//rsp:Stream", NS)
        assert stream is not None
        command = self._find(stream.get("CommandId"))
        if command is None:
            self._send(500, _fault(message_id, 2150858843, "unknown command"))
            return
        command.stdin += base64.b64decode(stream.text or "")
        if stream.get("End") == "true":
            command.stdin_done = True
            command.answer = server.answer(command)
            command.ready_at = (
                time.monotonic() + server.faults.delay + server.faults.op_delay.get(command.op or "", 0.0)
            )
        self._send(200, _envelope(f"{SHELL_URI}/SendResponse", message_id, "<rsp:SendResponse/>"))

    def _receive(self, root: ET.Element, message_id: str, operation_timeout: float) -> None:
        server = self.wsman
        desired = root.find(".//rsp:DesiredStream", NS)
        command = self._find(desired.get("CommandId") if desired is not None else None)
        if command is None:
            self._send(500, _fault(message_id, 2150858843, "unknown command"))
            return
        wait_until = time.monotonic() + min(operation_timeout, server.operation_timeout_cap)
        while (
            server.faults.never_answer
            or command.answer is None
            or command.answer.hang
            or time.monotonic() < command.ready_at
        ):
            left = wait_until - time.monotonic()
            if left <= 0:
                self._send(
                    500,
                    _fault(
                        message_id,
                        FAULT_TIMED_OUT,
                        "The WS-Management service cannot complete the operation within the time specified "
                        "in OperationTimeout.",
                        "w:TimedOut",
                    ),
                )
                return
            if server._stop.wait(min(left, 0.02)):
                return
        answer = command.answer
        chunk = server.faults.chunk_size or len(answer.stdout) or 1
        start = command.sent_offset
        piece = answer.stdout[start : start + chunk]
        command.sent_offset = start + len(piece)
        done = command.sent_offset >= len(answer.stdout)
        streams = f'<rsp:Stream Name="stdout" CommandId="{command.command_id}">{base64.b64encode(piece).decode()}</rsp:Stream>'
        if done:
            if answer.stderr:
                streams += (
                    f'<rsp:Stream Name="stderr" CommandId="{command.command_id}">'
                    f"{base64.b64encode(answer.stderr).decode()}</rsp:Stream>"
                )
            streams += f'<rsp:Stream Name="stdout" CommandId="{command.command_id}" End="true"></rsp:Stream>'
            streams += f'<rsp:Stream Name="stderr" CommandId="{command.command_id}" End="true"></rsp:Stream>'
            state = (
                f'<rsp:CommandState CommandId="{command.command_id}" State="{STATE_DONE}">'
                f"<rsp:ExitCode>{answer.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            state = f'<rsp:CommandState CommandId="{command.command_id}" State="{STATE_RUNNING}"/>'
        body = f'<rsp:ReceiveResponse SequenceID="0">{streams}{state}</rsp:ReceiveResponse>'
        self._send(200, _envelope(f"{SHELL_URI}/ReceiveResponse", message_id, body))


class BlackholeServer:
    """Accepts TCP connections and never answers: a host that hangs after connecting."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._accepted.append(conn)

    @property
    def connections(self) -> int:
        return len(self._accepted)

    def start(self) -> BlackholeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._accepted:
            conn.close()
        self._sock.close()

    def __enter__(self) -> BlackholeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


PASSWORD_ENV = "HVTUI_TEST_WINRM_PASSWORD"


def make_winrm_host(
    port: int,
    name: str = "hv-test",
    *,
    address: str = "127.0.0.1",
    scheme: str = "http",
    transport: str = "basic",
    username: str = "hvtui",
    test_transport: bool = True,
    max_shells: int = 2,
    secret_prompter: Callable[[str], str] | None = None,
    remote_files: Any = None,
    **settings: Any,
) -> Any:
    """A ``WinRMHost`` for a loopback server: basic over HTTP through the test-only flag.

    The password comes from the environment variable ``PASSWORD_ENV`` unless ``settings``
    names another source.  Short deadlines keep fault tests quick.
    """
    from hvtui.config import HostConfig, SecretSource, WinRMSettings
    from hvtui.hosts.winrm.host import WinRMHost

    settings.setdefault("password", SecretSource(env=PASSWORD_ENV))
    settings.setdefault("timeout", 5.0)
    settings.setdefault("operation_timeout", 1.0)
    settings.setdefault("long_timeout", 10.0)
    winrm = WinRMSettings(address=address, port=port, scheme=scheme, transport=transport, username=username, **settings)
    return WinRMHost(
        HostConfig(name=name, kind="winrm", winrm=winrm),
        secret_prompter=secret_prompter,
        allow_basic_over_http_for_tests=test_transport,
        max_shells=max_shells,
        remote_files=remote_files,
    )


def free_port() -> int:
    """A port nothing listens on (for 'connection refused')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



@pytest.fixture
def server(backend: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[WSManServer]:
    """A loopback server over the test module's own ``backend`` fixture, its password in
    ``PASSWORD_ENV``; stopped after the test.  Import it into the test module to use it."""
    srv = WSManServer(backend).start()
    monkeypatch.setenv(PASSWORD_ENV, srv.password)
    yield srv
    srv.stop()


__all__ = [
    "Answer",
    "BlackholeServer",
    "CLIXML_PROGRESS",
    "Faults",
    "LabBackend",
    "MemoryBackend",
    "ReceivedCommand",
    "WSManServer",
    "clixml_error",
    "document_answer",
    "failure_answer",
    "free_port",
    "make_winrm_host",
    "PASSWORD_ENV",
    "ps51_shapes",
    "raw_answer",
    "server",
]
