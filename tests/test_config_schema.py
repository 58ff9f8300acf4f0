"""The config schema declared once: the exported JSON Schema accepts config.example.yaml
and refuses what the loader refuses, and every mistake in a file is reported at once."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from hvtui.cli import _one_line
from hvtui.config import config_json_schema, load_config
from hvtui.errors import ConfigError
from hvtui.paths import Paths


def write(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_json_and_names_every_top_level_key() -> None:
    schema = json.loads(json.dumps(config_json_schema()))
    top = schema["$defs"]["ConfigModel"]
    assert set(top["properties"]) == {"hosts", "policy", "repositories", "jobs", "ui", "lab", "read_only", "log_level", "notifications", "schedules"}
    assert top["additionalProperties"] is False


def test_example_config_passes_the_loader_and_the_json_schema(
    repo_root: Path, paths: Paths, validator: jsonschema.Draft202012Validator
) -> None:
    example = repo_root / "config.example.yaml"
    load_config(example, paths)
    errors = list(validator.iter_errors(yaml.safe_load(example.read_text(encoding="utf-8"))))
    assert errors == [], [error.message for error in errors]


WINRM = "hosts:\n  - {name: hv01, kind: winrm, address: hv01.example, username: u, password_env: P%s}\n"

REFUSED_BY_BOTH = [
    pytest.param("hostz: []\n", id="unknown-top-key"),
    pytest.param(WINRM % ", port: 70000", id="port-out-of-range"),
    pytest.param(WINRM % ", password: hunter2", id="plain-password"),
    pytest.param(WINRM % ", scheme: ftp", id="unknown-scheme"),
    pytest.param("hosts:\n  - {name: a, kind: hyperv}\n", id="unknown-kind"),
    pytest.param("hosts:\n  - {name: a, kind: lab, address: x}\n", id="winrm-key-on-lab"),
    pytest.param("hosts:\n  - {name: 'hv 01', kind: lab}\n", id="bad-host-name"),
    pytest.param("hosts:\n  - {kind: winrm, name: a, username: u, password_env: P}\n", id="missing-address"),
    pytest.param("read_only: yes please\n", id="bool-as-text"),
    pytest.param("policy:\n  checkpoint_age: {warn: 3 days}\n", id="bad-duration"),
    pytest.param("policy:\n  differencing_size: {warn_bytes: 20 gigs}\n", id="bad-size"),
    pytest.param("policy:\n  exempt:\n    - {vm: x, rule: checkpoint-ages, reason: r}\n", id="unknown-rule"),
    pytest.param("policy:\n  exempt:\n    - {vm: x}\n", id="exemption-without-reason"),
    pytest.param("policy:\n  vms:\n    a/b/c: {}\n", id="bad-vm-key"),
    pytest.param("jobs: {max_concurrent: 0}\n", id="jobs-range"),
    pytest.param("ui: {refresh_seconds: 0.5}\n", id="refresh-too-fast"),
    pytest.param("log_level: warn\n", id="log-level"),
    pytest.param("notifications:\n  - {name: m, email: {to: [a@b.c], from: b@b.c, smtp: 'h:25', password: x}}\n", id="mail-plain-password"),
    pytest.param("notifications:\n  - {name: h, webhook: {url: 'https://h/x', format: slak}}\n", id="webhook-format"),
    pytest.param("notifications:\n  - {name: h, webhook: {url: 'ftp://h/x'}}\n", id="webhook-scheme"),
]


@pytest.mark.parametrize("text", REFUSED_BY_BOTH)
def test_json_schema_refuses_what_the_loader_refuses(
    tmp_path: Path, text: str, validator: jsonschema.Draft202012Validator
) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))
    assert list(validator.iter_errors(yaml.safe_load(text))), "the JSON Schema accepted it"


MANY_MISTAKES = """
hostz: []
hosts:
  - {name: a, kind: lab, port: 5}
  - {name: b, kind: lan}
  - name: c
    kind: winrm
    address: c.example
    username: u
policy:
  checkpoint_age: {warn: 8d, crit: 7d}
ui:
  refresh_seconds: 0.1
"""


def test_every_mistake_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 6 errors"
    assert lines[1:] == [
        f"{path}:1: hostz: unknown key; did you mean 'hosts'?",
        f"{path}:3: hosts[0].port: only valid for kind: winrm",
        f"{path}:4: hosts[1].kind: expected a host kind (lab, winrm), found 'lan'; did you mean 'lab'?",
        f"{path}:5: hosts[2]: transport ntlm needs a password source: one of password_env, password_command or password_prompt: true",
        f"{path}:10: policy.checkpoint_age: warn (8d) is above crit (7d); warn must be at most crit",
        f"{path}:12: ui.refresh_seconds: expected a duration of at least 1s, found 0.1 (a number)",
    ]
    # The CLI's one-line form keeps the summary first and every mistake after it.
    assert _one_line(caught.value) == " / ".join(lines)


def test_several_mistakes_in_one_host_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, WINRM % ", port: https, scheme: ftp, commands_per_shell: 0")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = str(caught.value)
    assert error.startswith(f"{path}: 3 errors\n")
    for key in ("port", "scheme", "commands_per_shell"):
        assert f"hosts[0].{key}: expected" in error


def test_one_mistake_stays_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs: {per_host: 0}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:1: jobs.per_host: expected an integer 1-64, found 0 (an integer)"
