"""A repository's ``s3:`` block: the shape of issue 21 loads into typed settings (keys as sources,
never values; the working folder under the state dir), and each mistake is one error on its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvtui.config import S3RepositoryConfig, SecretSource, load_config
from hvtui.config.s3 import endpoint_problem
from hvtui.errors import ConfigError
from hvtui.paths import Paths

OFFSITE = """repositories:
  - name: local
    path: /r/local
    default: true
  - name: offsite
    s3: {endpoint: https://s3.example.com, bucket: b, prefix: /site-a/, region: eu-central-1,
         access_key_env: AWS_ACCESS_KEY_ID, secret_key_command: pass show s3,
         ca_bundle: ~/corp-ca.pem, storage_class: STANDARD_IA, insecure_http: false}
    passphrase_env: HVTUI_OFFSITE_PASSPHRASE
    retention: {keep_weekly: 4}
"""


def load(tmp_path: Path, paths: Paths, text: str):  # noqa: ANN201 - a Config
    file = tmp_path / "config.yaml"
    file.write_text(text)
    return load_config(file, paths)


def test_the_issue_shape_loads_with_sources_and_a_working_folder(tmp_path: Path, paths: Paths) -> None:
    config = load(tmp_path, paths, OFFSITE)
    offsite = config.repository("offsite")
    assert offsite is not None
    assert offsite.s3 == S3RepositoryConfig(
        bucket="b", endpoint="https://s3.example.com", prefix="site-a", region="eu-central-1",
        access_key=SecretSource(env="AWS_ACCESS_KEY_ID"), secret_key=SecretSource(command="pass show s3"),
        ca_bundle=Path.home() / "corp-ca.pem", storage_class="STANDARD_IA", insecure_http=False,
    )  # fmt: skip
    assert offsite.path == paths.state_dir / "repositories" / "offsite"
    assert offsite.format == 2 and offsite.where == "s3://b/site-a"
    assert offsite.passphrase == SecretSource(env="HVTUI_OFFSITE_PASSPHRASE")
    assert offsite.retention.keep_weekly == 4
    local = config.repository("local")
    assert local is not None and local.s3 is None and local.where == "/r/local"


def test_without_key_sources_the_aws_chain_is_used(tmp_path: Path, paths: Paths) -> None:
    config = load(tmp_path, paths, "repositories:\n  - name: o\n    s3: {bucket: b, region: eu-west-1}\n    passphrase_prompt: true\n")
    s3 = config.repositories[0].s3
    assert s3 is not None and s3.access_key is None and s3.secret_key is None and s3.endpoint is None


def test_the_example_config_documents_an_s3_repository(repo_root: Path, paths: Paths) -> None:
    offsite = load_config(repo_root / "config.example.yaml", paths).repository("offsite")
    assert offsite is not None and offsite.s3 is not None
    assert offsite.s3.where == "s3://hvtui-backups/site-a" and offsite.s3.access_key == SecretSource(env="AWS_ACCESS_KEY_ID")


S3 = "repositories:\n  - name: o\n    passphrase_env: P\n    s3:\n      bucket: b\n      region: r\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            S3 + "      endpoint: http://s3.example.com\n", 7,
            "repositories[0].s3.endpoint: plain http to a host that is not this machine would send backups and credentials "
            "unencrypted; use https, or set insecure_http: true",
            id="plain-http",
        ),
        pytest.param(
            S3 + "      endpoint: s3.example.com\n", 7,
            "repositories[0].s3.endpoint: the endpoint must be an http(s) URL such as https://s3.example.com", id="not-a-url",
        ),
        pytest.param(
            "repositories:\n  - name: o\n    s3: {bucket: b, region: r}\n", 3,
            "repositories[0].s3: a repository on S3 must be encrypted (the storage is not yours): set passphrase_env",
            id="no-passphrase",
        ),
        pytest.param(
            S3 + "      access_key: AKIAEXAMPLE\n", 7,
            "repositories[0].s3.access_key: S3 keys are not accepted in the config file; use access_key_env", id="plain-access-key",
        ),
        pytest.param(
            S3 + "      secret_key: hunter2\n", 7,
            "repositories[0].s3.secret_key: S3 keys are not accepted in the config file; use secret_key_env", id="plain-secret-key",
        ),
        pytest.param(
            S3 + "      access_key_env: A\n", 5,
            "repositories[0].s3: s3: gives a source of the access key but none of the secret key: set secret_key_env",
            id="half-a-key-pair",
        ),
        pytest.param(
            S3 + "      access_key_env: A\n      access_key_command: pass a\n      secret_key_env: S\n", 8,
            "repositories[0].s3.access_key_command: only one source of the access key may be set", id="two-key-sources",
        ),
        pytest.param(
            S3 + "    format: 1\n", 7,
            "repositories[0].format: a repository on S3 is always format 2 (packs); remove format: or set 2", id="format-1",
        ),
        pytest.param(
            S3 + "    path: /r/o\n", 7,
            "repositories[0].path: a repository lives either in a folder (path:) or in a bucket (s3:), not both", id="path-and-s3",
        ),
        pytest.param(
            "repositories:\n  - name: o\n    passphrase_env: P\n", 2,
            "repositories[0]: missing required key 'path' (the repository's directory), or s3: for a repository in a bucket",
            id="neither",
        ),
        pytest.param(
            "repositories:\n  - name: o\n    passphrase_env: P\n    s3: {bucket: b}\n", 4,
            "repositories[0].s3: s3: needs an endpoint (any S3-compatible service) or a region (AWS S3)", id="nowhere",
        ),
        pytest.param(
            "repositories:\n  - name: o\n    passphrase_env: P\n    s3: {region: r}\n", 4,
            "repositories[0].s3: missing required key 'bucket' (the bucket that holds the repository)", id="no-bucket",
        ),
    ],
)
def test_each_mistake_is_named_on_its_line(tmp_path: Path, paths: Paths, text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, paths, text)
    assert f"config.yaml:{line}: {message}" in str(raised.value)


def test_loopback_and_insecure_http_are_accepted(tmp_path: Path, paths: Paths) -> None:
    for endpoint, insecure in (("http://127.0.0.1:8333", "false"), ("http://localhost:9000", "false"), ("http://gw.lan", "true")):
        config = load(tmp_path, paths, S3 + f"      endpoint: {endpoint}\n      insecure_http: {insecure}\n")
        assert config.repositories[0].s3.endpoint == endpoint  # type: ignore[union-attr]
    assert endpoint_problem("http://[::1]:8333", False) is None
    assert endpoint_problem("https://s3.example.com", False) is None


def test_hvtui_info_and_config_check_name_where_the_repository_lives(
    tmp_path: Path, paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from hvtui.cli import main

    file = tmp_path / "config.yaml"
    file.write_text(OFFSITE)
    assert main(["--config", str(file), "info", "--json"]) == 0
    repos = {r["name"]: r for r in json.loads(capsys.readouterr().out)["repositories"]}
    assert repos["offsite"]["where"] == "s3://b/site-a" and repos["local"]["where"] == "/r/local"
    assert repos["offsite"]["path"] == str(paths.state_dir / "repositories" / "offsite")
    assert main(["config", "check", str(file)]) == 0
    assert "2 repositories" in capsys.readouterr().out
