"""``hosts:`` as read against the models -> ``HostConfig``s, with the rules between keys
that one key's type cannot say (plain HTTP, password sources, certificates, timeouts)."""

from __future__ import annotations

import math

from msgspec import UNSET

from hvtui.config.document import Document, describe
from hvtui.config.load_smb import convert_smb
from hvtui.config.models import PASSWORD_TRANSPORTS, WinRMHostModel
from hvtui.config.settings import DEFAULT_RESTORE_DIR, HostConfig, SecretSource, WinRMSettings
from hvtui.config.units import format_duration
from hvtui.config.walk import Read, duration_seconds, first_of_each_name


def convert_hosts(doc: Document, hosts: Read | None) -> tuple[HostConfig, ...]:
    """The hosts free of mistakes (the others are reported); duplicate names are reported."""
    if hosts is None or hosts.data is None or not hosts.items and not hosts.ok:
        return ()
    result: list[HostConfig] = []
    for item in first_of_each_name(doc, hosts.items, "host"):
        if item.model is None:
            continue
        host = _convert_host(doc, item)
        if host is not None:
            result.append(host)
    return tuple(result)


def _convert_host(doc: Document, item: Read) -> HostConfig | None:
    model = item.model
    winrm = None
    if isinstance(model, WinRMHostModel):
        winrm = _convert_winrm(doc, item, model)
        if winrm is None:
            return None
    return HostConfig(
        name=model.name,
        kind="winrm" if winrm is not None else "lab",
        group=model.group if model.group is not UNSET else None,
        read_only=model.read_only if model.read_only is not UNSET else False,
        winrm=winrm,
        line=item.at.line,
    )


def _convert_winrm(doc: Document, item: Read, host: WinRMHostModel) -> WinRMSettings | None:
    """The WinRM settings, or None when a rule between keys is broken (each one reported)."""
    before = len(doc.problems)
    scheme = host.scheme if host.scheme is not UNSET else "https"
    transport = host.transport if host.transport is not UNSET else "ntlm"
    allow_http = host.allow_http if host.allow_http is not UNSET else False
    port = host.port if host.port is not UNSET else (5986 if scheme == "https" else 5985)

    if scheme == "http":
        scheme_at = item.where("scheme")
        if transport == "basic":
            doc.report(
                item.keys.get("transport", item.keys["scheme"]).at,
                "basic authentication over plain HTTP would send the password unencrypted; "
                "use scheme: https, or a transport that encrypts messages (ntlm, kerberos, credssp)",
            )
        elif transport == "certificate":
            doc.report(item.keys.get("transport", item.keys["scheme"]).at, "the certificate transport needs scheme: https")
        elif not allow_http:
            doc.report(
                scheme_at,
                "plain HTTP needs allow_http: true (and then only ntlm, kerberos or credssp, "
                "which encrypt messages); use scheme: https where you can",
            )

    verify_tls = host.verify_tls if host.verify_tls is not UNSET else True
    ca_bundle = None
    if host.ca_bundle not in (UNSET, None):
        if scheme != "https":
            doc.report(item.where("ca_bundle"), "a CA bundle only applies to scheme: https")
        elif not verify_tls:
            doc.report(item.where("ca_bundle"), "a CA bundle is given but verify_tls is false; remove one of them")
        ca_bundle = doc.resolve_path(host.ca_bundle)

    cert_pem = cert_key_pem = None
    if transport == "certificate":
        missing = [key for key in ("cert_pem", "cert_key_pem") if key not in item.keys]
        if missing:
            doc.report(item.at, f"missing required key '{missing[0]}' (the certificate transport needs cert_pem and cert_key_pem)")
        else:
            cert_pem, cert_key_pem = doc.resolve_path(host.cert_pem), doc.resolve_path(host.cert_key_pem)
    else:
        for key in ("cert_pem", "cert_key_pem"):
            if key in item.keys:
                doc.report(item.where(key), f"only used with transport: certificate (this host uses {transport})")

    username = host.username if host.username is not UNSET else None
    password = _password_source(doc, item, host, transport)
    if transport in PASSWORD_TRANSPORTS and username is None:
        doc.report(item.at, f"missing required key 'username' (transport {transport} logs on with a user name and password)")

    timeout = duration_seconds(host.timeout) if host.timeout is not UNSET else 30.0
    assert timeout is not None
    if host.operation_timeout is not UNSET:
        operation_timeout = duration_seconds(host.operation_timeout)
        assert operation_timeout is not None
        if operation_timeout >= timeout:
            doc.report(
                item.where("operation_timeout"),
                f"operation_timeout ({format_duration(operation_timeout)}) must be below timeout "
                f"({format_duration(timeout)}): the HTTP read must outlast the WS-Management operation",
            )
    else:
        # Keep pywinrm's 20s/30s pair unless a shorter call deadline forces it down.
        operation_timeout = min(20.0, float(max(1, math.floor(timeout * 2 / 3))))
    if host.long_timeout is not UNSET:
        long_timeout = duration_seconds(host.long_timeout)
        assert long_timeout is not None
        if long_timeout < timeout:
            where = item.where("long_timeout")
            doc.report(where, f"expected a duration of at least {format_duration(timeout)}, found {describe(where.node)}")
    else:
        long_timeout = max(3600.0, timeout)
    commands_per_shell = host.commands_per_shell if host.commands_per_shell is not UNSET else 50
    restore_dir = host.restore_dir.rstrip("\\") if host.restore_dir is not UNSET else DEFAULT_RESTORE_DIR
    smb = convert_smb(doc, item.keys.get("smb"), host.smb)

    if len(doc.problems) > before:
        return None
    return WinRMSettings(
        address=host.address,
        port=port,
        scheme=scheme,
        transport=transport,
        username=username,
        password=password,
        ca_bundle=ca_bundle,
        verify_tls=verify_tls,
        allow_http=allow_http,
        cert_pem=cert_pem,
        cert_key_pem=cert_key_pem,
        timeout=timeout,
        operation_timeout=operation_timeout,
        long_timeout=long_timeout,
        commands_per_shell=commands_per_shell,
        consistency=host.consistency if host.consistency is not UNSET else "prefer-application",
        restore_dir=restore_dir or DEFAULT_RESTORE_DIR,
        smb=smb,
    )


def _password_source(doc: Document, item: Read, host: WinRMHostModel, transport: str) -> SecretSource:
    given = [key for key in ("password_env", "password_command") if key in item.keys]
    if host.password_prompt is True:
        given.append("password_prompt")
    if transport not in PASSWORD_TRANSPORTS:
        if given:
            how = "the Kerberos ticket cache (run kinit)" if transport == "kerberos" else "cert_pem and cert_key_pem"
            doc.report(
                item.where(given[0]),
                f"transport {transport} does not use a password: it authenticates with {how}; remove {given[0]}",
            )
        return SecretSource()
    if not given:
        doc.report(
            item.at,
            f"transport {transport} needs a password source: one of password_env, password_command or password_prompt: true",
        )
    elif len(given) > 1:
        doc.report(item.where(given[1]), f"only one password source may be set, found {' and '.join(given)}")
    return SecretSource(
        env=host.password_env if host.password_env is not UNSET else None,
        command=host.password_command if host.password_command is not UNSET else None,
        prompt=host.password_prompt is True,
    )
