"""Every answer's envelope: ``{"ok": true, ...}``, or a failure document mapped to its error.

Every failure is ``{"ok": false, "error": "<message>", "fqid": "<FullyQualifiedErrorId>"}``, with
``"kind"`` where the caller acts on the kind of failure (the contract's backup and restore
operations); a kind not listed in ``FAILURE_KINDS`` is a plain failure.
"""

from __future__ import annotations

from collections.abc import Mapping

from hvtui.errors import HostError, NotFoundError
from hvtui.wire.fields import MISSING, Malformed, describe

WIRE_VERSION = 1

# The failure kinds of the contract's backup and restore operations.
FAILURE_KINDS = frozenset(
    {"not-found", "state", "argument", "space", "incompatible", "disk-check", "busy", "consistency", "rct-invalid"}
)


def protocol_error(host: str, operation: str, err: Malformed) -> HostError:
    return HostError(
        host, operation, f"{err.path}: expected {err.expected}, found {describe(err.found)}", kind="protocol"
    )


def check_envelope(doc: object, host: str, operation: str) -> Mapping:
    """The document as an object whose ``ok`` is true; a failure document raises its mapped error."""
    if not isinstance(doc, dict):
        raise protocol_error(host, operation, Malformed("document", "an object", doc))
    ok = doc.get("ok", MISSING)
    if ok is True:
        return doc
    if ok is False:
        from hvtui.hosts.winrm.errors import remote_failure

        message = doc.get("error")
        fqid = doc.get("fqid")
        err = remote_failure(
            host, operation, message if isinstance(message, str) else "", fqid if isinstance(fqid, str) else ""
        )
        kind = doc.get("kind")
        if isinstance(kind, str) and kind in FAILURE_KINDS and err.kind in ("failed", "not-found"):
            # The kind says what went wrong: the message needs no error id after it.
            detail = err.detail.removesuffix(f" [{fqid}]") if isinstance(fqid, str) else err.detail
            if kind == "not-found":
                raise NotFoundError(host, operation, detail)
            raise HostError(host, operation, detail, kind=kind)
        raise err
    raise protocol_error(host, operation, Malformed("document.ok", "true or false", ok))
