"""Every answer's envelope: ``{"ok": true, ...}``, or a failure document mapped to its error.

Every failure is ``{"ok": false, "error": "<message>", "fqid": "<FullyQualifiedErrorId>"}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from hvtui.errors import HostError
from hvtui.wire.fields import MISSING, Malformed, describe

WIRE_VERSION = 1


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
        raise remote_failure(
            host, operation, message if isinstance(message, str) else "", fqid if isinstance(fqid, str) else ""
        )
    raise protocol_error(host, operation, Malformed("document.ok", "true or false", ok))
