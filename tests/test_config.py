"""Config discovery, loading and validation: valid files load with the values they say, and
every kind of mistake is refused with its own message naming the file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hvtui.config import (
    DAY,
    HOUR,
    Config,
    RepositoryConfig,
    SecretSource,
    Thresholds,
    find_config_file,
    format_duration,
    load_config,
    parse_duration,
    parse_size,
)
from hvtui.core import Core, Options
from hvtui.errors import ConfigError
from hvtui.paths import Paths


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, paths: Paths | None = None) -> Config:
    return load_config(write(tmp_path, text), paths)


WINRM_HOST = """
hosts:
  - name: hv01
    kind: winrm
    address: hv01.corp.example
    username: 'CORP\\svc'
    password_env: HV01_PASSWORD
"""


# -- valid files ------------------------------------------------------------------------


def test_example_config_loads_with_the_values_it_documents(repo_root: Path, paths: Paths) -> None:
    config = load_config(repo_root / "config.example.yaml", paths)

    assert config.source == (repo_root / "config.example.yaml").absolute()
    assert [host.name for host in config.hosts] == ["lab-hv01", "hv01", "hv02", "hv-dr", "hv-lab-http"]
    lab_a, hv01, hv02, hv_dr, hv_http = config.hosts
    assert lab_a.kind == "lab" and lab_a.winrm is None and lab_a.group == "lab"
    assert hv01.read_only is True and hv01.group == "prod"
    assert hv01.winrm is not None
    assert hv01.winrm.username == "CORP\\svc-hvtui"
    assert hv01.winrm.password == SecretSource(env="HVTUI_HV01_PASSWORD")
    assert hv01.winrm.endpoint == "https://hv01.corp.example:5986/wsman"
    assert hv02.winrm is not None and hv02.winrm.password == SecretSource(command="pass show hyperv/hv02")
    assert hv_dr.winrm is not None and hv_dr.winrm.password.prompt and hv_dr.winrm.transport == "credssp"
    assert hv_http.winrm is not None
    assert (hv_http.winrm.scheme, hv_http.winrm.port, hv_http.winrm.transport) == ("http", 5985, "kerberos")
    assert not hv_http.winrm.password.configured

    policy = config.policy
    assert policy.defaults.differencing_warn_bytes == 100 * 1024**3
    assert policy.groups["dr"].checkpoint_age_crit == 14 * DAY
    assert policy.thresholds_for("hv01", "sql01", "prod").count_crit == 2
    assert policy.thresholds_for("hv02", "build-agent", None).depth_crit == 10
    assert [e.rule for e in policy.exemptions] == [None, "checkpoint-not-backup"]
    assert policy.exemptions[0].checkpoint == "Veeam*"

    assert [repo.name for repo in config.repositories] == ["local", "nas", "vault", "offsite"]
    vault = config.repository("vault")
    assert vault is not None and vault.passphrase == SecretSource(env="HVTUI_VAULT_PASSPHRASE")
    assert not config.repository("nas").passphrase.configured  # type: ignore[union-attr]
    assert config.default_repository().name == "local"
    assert config.default_repository().path == Path.home() / "hvtui-backups"
    assert config.repository("nas") is not None
    assert config.lab.dir is None and config.lab.profile == "demo"
    assert config.ui.refresh_seconds == 5.0


def test_minimal_config_gets_the_defaults_and_a_default_repository(tmp_path: Path, paths: Paths) -> None:
    config = load(tmp_path, "hosts:\n  - {name: lab-a, kind: lab}\n", paths)

    assert config.hosts[0].line == 2
    assert config.read_only is False and config.log_level == "info"
    assert config.policy.defaults == Thresholds()
    assert config.repositories == (RepositoryConfig(name="default", path=paths.default_repository, default=True),)
    assert config.default_repository().path == paths.default_repository


def test_lab_default_config_has_the_default_repository(paths: Paths) -> None:
    config = Config.lab_default(paths)
    assert config.is_builtin_lab and config.hosts == ()
    assert config.default_repository() == RepositoryConfig("default", paths.default_repository, default=True)


def test_config_built_in_code_without_repositories_still_has_a_default(paths: Paths) -> None:
    config = Config(source=None, hosts=())
    assert config.default_repository() == RepositoryConfig("default", paths.default_repository, default=True)
    assert config.repository("default") == config.default_repository()
    assert config.repository("elsewhere") is None


def test_winrm_defaults_and_derived_values(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        WINRM_HOST
        + """
  - name: hv02
    kind: winrm
    address: "fe80::1"
    scheme: http
    allow_http: true
    username: svc
    password_prompt: true
    timeout: 6s
""",
    )
    hv01, hv02 = (host.winrm for host in config.hosts)
    assert hv01 is not None and hv02 is not None
    assert (hv01.port, hv01.scheme, hv01.transport, hv01.verify_tls) == (5986, "https", "ntlm", True)
    assert (hv01.timeout, hv01.operation_timeout, hv01.long_timeout) == (30.0, 20.0, 3600.0)
    assert hv02.port == 5985 and hv02.endpoint == "http://[fe80::1]:5985/wsman"
    # A short call deadline pulls the WS-Man operation timeout below it.
    assert hv02.timeout == 6.0 and hv02.operation_timeout == 4.0


def test_paths_expand_home_and_resolve_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("ca")
    config = load(
        tmp_path,
        WINRM_HOST
        + """
    ca_bundle: certs/ca.pem
repositories:
  - {name: r, path: ~/backups}
lab:
  dir: lab-files
""",
    )
    assert config.hosts[0].winrm is not None
    assert config.hosts[0].winrm.ca_bundle == tmp_path / "certs" / "ca.pem"
    assert config.repositories[0].path == tmp_path / "home" / "backups"
    assert config.repositories[0].default is True  # the only one is the default
    assert config.lab.dir == tmp_path / "lab-files"


def test_policy_overrides_merge_onto_the_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
policy:
  checkpoint_age: {warn: 1d}
  chain_depth: {warn: 2, crit: 4}
  differencing_size: {warn_percent: 50, warn_bytes: 20G}
  merge_headroom: {min_free_percent: 10}
  backup_age: {crit: 36h}
  checkpoint_not_backup: {crit: 4h}
  replica_checkpoints: true
  groups:
    prod:
      checkpoint_age: {crit: 2d}
  vms:
    hv01/db: {checkpoint_count: {warn: 0, crit: 1, limit: 5}}
    web: {recovery_checkpoint_age: {warn: 30m, crit: 2h}}
  exempt:
    - {vm: "lab-*/veeam*", checkpoint: "Veeam*", reason: kept by Veeam}
""",
    )
    policy = config.policy
    assert policy.defaults.checkpoint_age_warn == 1 * DAY and policy.defaults.checkpoint_age_crit == 7 * DAY
    assert policy.defaults.differencing_warn_bytes == 20 * 1024**3
    assert policy.defaults.merge_min_free_percent == 10.0
    assert policy.defaults.backup_max_age == 36 * HOUR and policy.defaults.replica_alerts is True
    assert policy.defaults.not_backup_crit == 4 * HOUR and prod_not_backup(policy) == 4 * HOUR
    prod = policy.groups["prod"]
    assert (prod.checkpoint_age_warn, prod.checkpoint_age_crit) == (1 * DAY, 2 * DAY)
    assert (prod.depth_warn, prod.depth_crit) == (2, 4)  # untouched keys come from the defaults
    assert policy.thresholds_for("hv01", "db", "prod").count_limit == 5
    assert policy.thresholds_for("hv02", "db", "prod") is prod  # "hv01/db" does not match hv02
    assert policy.thresholds_for("hv02", "web", None).recovery_age_warn == 30 * 60
    assert policy.thresholds_for("hv02", "other", "test") is policy.defaults
    assert policy.exemptions[0].reason == "kept by Veeam" and policy.exemptions[0].rule is None


def prod_not_backup(policy) -> float:  # noqa: ANN001
    return policy.groups["prod"].not_backup_crit  # a group override inherits it from the defaults


def test_yaml_merge_keys_share_host_settings(tmp_path: Path) -> None:
    # Anchors need a home in the file; an unknown top-level key is an error, so they live
    # inside the first host and are merged into the second.
    config = load(
        tmp_path,
        """
hosts:
  - &winrm
    name: hv01
    kind: winrm
    address: hv01.example
    username: svc
    password_env: HV_PASSWORD
  - <<: *winrm
    name: hv02
    address: hv02.example
    password_env: OTHER
""",
    )
    hv02 = config.hosts[1]
    assert hv02.name == "hv02" and hv02.winrm is not None
    assert hv02.winrm.username == "svc" and hv02.winrm.password.env == "OTHER"
    assert hv02.winrm.address == "hv02.example"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("90m", 5400), ("12h", 43200), ("3d", 259200), ("2w", 1209600), ("1h30m", 5400), ("45", 45), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3 days", "3x", "h", "-5s", "-5", "inf", "nan", "5s junk", "1h 2"])
def test_parse_duration_refuses(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "size"),
    [("100GiB", 100 * 1024**3), ("20G", 20 * 1024**3), ("500MB", 500 * 10**6), ("512", 512), ("1.5TiB", int(1.5 * 1024**4)), ("4 KiB", 4096)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "20 gigs", "GiB", "-1G", "1.2.3G"])
def test_parse_size_refuses(text: str) -> None:
    assert parse_size(text) is None


def test_format_duration_round_trips() -> None:
    for text in ("3d", "1h30m", "45s", "2d12h"):
        seconds = parse_duration(text)
        assert seconds is not None and format_duration(seconds) == text


# -- finding the file ----------------------------------------------------------------------


def test_no_config_anywhere_means_the_builtin_lab(paths: Paths) -> None:
    assert find_config_file(None, paths) is None
    core = Core.from_options(Options(), paths)
    assert core.config.is_builtin_lab
    assert core.config.default_repository().path == paths.default_repository
    assert core.lab_dir == paths.lab_dir


@pytest.mark.parametrize("name", ["config.yaml", "config.yml"])
def test_user_config_dir_yaml_and_yml(paths: Paths, name: str) -> None:
    path = write(paths.config_dir, "read_only: true\n", name)
    assert find_config_file(None, paths) == path
    core = Core.from_options(Options(), paths)
    assert core.config.source == path and core.read_only is True


def test_both_yaml_and_yml_is_an_error_naming_both(paths: Paths) -> None:
    yaml_file = write(paths.config_dir, "read_only: true\n", "config.yaml")
    yml_file = write(paths.config_dir, "read_only: false\n", "config.yml")
    with pytest.raises(ConfigError) as caught:
        find_config_file(None, paths)
    assert str(yaml_file) in str(caught.value) and str(yml_file) in str(caught.value)


def test_hvtui_config_beats_the_user_dir_and_cli_beats_both(
    tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(paths.config_dir, "log_level: error\n")
    from_env = write(tmp_path, "log_level: warning\n", "env.yml")
    from_cli = write(tmp_path, "log_level: debug\n", "cli.yaml")
    monkeypatch.setenv("HVTUI_CONFIG", str(from_env))
    assert find_config_file(None, paths) == from_env
    assert Core.from_options(Options(), paths).config.log_level == "warning"
    assert find_config_file(from_cli, paths) == from_cli
    assert Core.from_options(Options(config_path=from_cli), paths).config.log_level == "debug"


def test_missing_explicit_config_is_an_error(tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml \(given with --config\)"):
        find_config_file(tmp_path / "nope.yaml", paths)
    monkeypatch.setenv("HVTUI_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone\.yaml \(named by \$HVTUI_CONFIG\)"):
        find_config_file(None, paths)
    with pytest.raises(ConfigError, match="not a file"):
        find_config_file(tmp_path, paths)


# -- mistakes ---------------------------------------------------------------------------------

MISTAKES = [
    pytest.param("hostz:\n  - {name: a, kind: lab}\n", 1, "hostz: unknown key; did you mean 'hosts'?", id="unknown-top-key"),
    pytest.param(
        WINRM_HOST.replace("    address:", "    adress:"), 4, "hosts[0].adress: unknown key; did you mean 'address'?", id="unknown-host-key"
    ),
    pytest.param(
        "ui:\n  theme: x\n  colour: red\n", 3, "ui.colour: unknown key; expected one of: theme, refresh_seconds, mouse", id="unknown-key-no-match"
    ),
    pytest.param("read_only: yes please\n", 1, "read_only: expected true or false, found 'yes please'", id="wrong-type-bool"),
    pytest.param("hosts:\n  name: a\n", 2, "hosts: expected a list of hosts, found a mapping", id="wrong-type-list"),
    pytest.param(
        "jobs:\n  max_concurrent: two\n", 2, "jobs.max_concurrent: expected an integer 1-64, found 'two'", id="wrong-type-int"
    ),
    pytest.param(
        "hosts:\n  - name: hv01\n    kind: winrm\n    username: u\n    password_env: P\n",
        2,
        "hosts[0]: missing required key 'address' (the host's DNS name or IP address)",
        id="missing-address",
    ),
    pytest.param("hosts:\n  - name: hv01\n", 2, "hosts[0]: missing required key 'kind' (lab or winrm)", id="missing-kind"),
    pytest.param(
        "hosts:\n  - name: hv01\n    kind: hyperv\n", 3, "hosts[0].kind: expected a host kind (lab, winrm), found 'hyperv'", id="unknown-kind"
    ),
    pytest.param(
        "hosts:\n  - name: a\n    kind: lab\n  - name: b\n    kind: lan\n",
        5,
        "hosts[1].kind: expected a host kind (lab, winrm), found 'lan'; did you mean 'lab'?",
        id="kind-did-you-mean",
    ),
    pytest.param(WINRM_HOST + "    port: https\n", 7, "hosts[0].port: expected an integer 1-65535, found 'https'", id="bad-port-text"),
    pytest.param(WINRM_HOST + "    port: 70000\n", 7, "hosts[0].port: expected an integer 1-65535, found 70000 (an integer)", id="bad-port-range"),
    pytest.param(
        "hosts:\n  - {name: hv01, kind: lab}\n  - {name: x, kind: lab}\n  - {name: hv01, kind: lab}\n",
        4,
        "hosts[2].name: duplicate host name 'hv01' (first defined on line 2)",
        id="duplicate-host",
    ),
    pytest.param(
        "hosts:\n  - {name: hv 01, kind: lab}\n", 2, "hosts[0].name: expected a host name: letters, digits", id="bad-host-name"
    ),
    pytest.param(
        WINRM_HOST.replace("    password_env: HV01_PASSWORD\n", "    password: Sup3r-Secret!\n"),
        6,
        "hosts[0].password: a plain-text password is not accepted in the config file; use password_env",
        id="plain-password",
    ),
    pytest.param(
        WINRM_HOST + "    scheme: http\n    allow_http: true\n    transport: basic\n",
        9,
        "hosts[0].transport: basic authentication over plain HTTP would send the password unencrypted",
        id="basic-over-http",
    ),
    pytest.param(
        WINRM_HOST + "    scheme: http\n",
        7,
        "hosts[0].scheme: plain HTTP needs allow_http: true",
        id="http-without-allow-http",
    ),
    pytest.param(
        WINRM_HOST + "    timeout: 30s\n    operation_timeout: 30s\n",
        8,
        "hosts[0].operation_timeout: operation_timeout (30s) must be below timeout (30s)",
        id="operation-timeout-not-below-timeout",
    ),
    pytest.param(
        WINRM_HOST + "    long_timeout: 10s\n",
        7,
        "hosts[0].long_timeout: expected a duration of at least 30s, found '10s'",
        id="long-timeout-below-timeout",
    ),
    pytest.param(
        "hosts:\n  - name: hv01\n    kind: winrm\n    address: hv01\n    username: u\n",
        2,
        "hosts[0]: transport ntlm needs a password source: one of password_env, password_command or password_prompt: true",
        id="no-password-source",
    ),
    pytest.param(
        WINRM_HOST + "    password_command: pass show hv01\n",
        7,
        "hosts[0].password_command: only one password source may be set, found password_env and password_command",
        id="two-password-sources",
    ),
    pytest.param(
        "hosts:\n  - {name: a, kind: lab}\nrepositories:\n  - name: r\n    path: /tmp/r\n    passphrase: hunter2hunter2\n",
        6,
        "repositories[0].passphrase: a plain-text passphrase is not accepted in the config file; use passphrase_env",
        id="plain-passphrase",
    ),
    pytest.param(
        "hosts:\n  - {name: a, kind: lab}\nrepositories:\n  - name: r\n    path: /tmp/r\n    passphrase_env: P\n"
        "    passphrase_command: pass show r\n",
        7,
        "repositories[0].passphrase_command: only one passphrase source may be set, found passphrase_env and passphrase_command",
        id="two-passphrase-sources",
    ),
    pytest.param(
        WINRM_HOST + "    transport: kerberos\n",
        6,
        "hosts[0].password_env: transport kerberos does not use a password: it authenticates with the Kerberos ticket cache",
        id="password-with-kerberos",
    ),
    pytest.param(
        "hosts:\n  - name: hv01\n    kind: winrm\n    address: hv01\n    password_env: P\n",
        2,
        "hosts[0]: missing required key 'username'",
        id="missing-username",
    ),
    pytest.param(
        "hosts:\n  - name: hv01\n    kind: winrm\n    address: hv01\n    transport: certificate\n",
        2,
        "hosts[0]: missing required key 'cert_pem'",
        id="certificate-without-cert",
    ),
    pytest.param(
        WINRM_HOST + "    ca_bundle: /nonexistent/ca.pem\n",
        7,
        "hosts[0].ca_bundle: expected an existing file, found no file at /nonexistent/ca.pem",
        id="missing-ca-bundle",
    ),
    pytest.param(
        WINRM_HOST.replace("address: hv01.corp.example", "address: https://hv01:5986/wsman"),
        4,
        "hosts[0].address: expected a DNS name or IP address, found 'https://hv01:5986/wsman'",
        id="address-with-scheme",
    ),
    pytest.param(
        WINRM_HOST.replace("HV01_PASSWORD", "HV01-PASSWORD"),
        6,
        "hosts[0].password_env: expected an environment variable name",
        id="bad-env-name",
    ),
    pytest.param(
        "hosts:\n  - name: lab-a\n    kind: lab\n    address: 10.0.0.1\n", 4, "hosts[0].address: only valid for kind: winrm", id="winrm-key-on-lab"
    ),
    pytest.param(
        "policy:\n  checkpoint_age:\n    warn: 3 days\n",
        3,
        "policy.checkpoint_age.warn: expected a duration such as 30s, 90m, 12h, 3d, 2w or a number of seconds, found '3 days'",
        id="bad-duration",
    ),
    pytest.param("policy:\n  backup_age: {crit: .inf}\n", 2, "policy.backup_age.crit: expected a duration such as", id="infinite-duration"),
    pytest.param(
        "policy:\n  differencing_size:\n    warn_bytes: 20 gigs\n",
        3,
        "policy.differencing_size.warn_bytes: expected a size such as 500MB, 20G, 100GiB or a number of bytes, found '20 gigs'",
        id="bad-size",
    ),
    pytest.param(
        "policy:\n  checkpoint_age: {warn: 8d, crit: 7d}\n",
        2,
        "policy.checkpoint_age: warn (8d) is above crit (7d); warn must be at most crit",
        id="warn-above-crit",
    ),
    pytest.param(
        "policy:\n  groups:\n    prod:\n      chain_depth: {warn: 9}\n",
        4,
        "policy.groups.prod.chain_depth: warn (9) is above crit (8) (the other one inherited)",
        id="warn-above-inherited-crit",
    ),
    pytest.param(
        "policy:\n  checkpoint_count: {limit: 60}\n", 2, "policy.checkpoint_count.limit: expected an integer 1-50, found 60", id="count-limit"
    ),
    pytest.param(
        'policy:\n  vms:\n    "hv01/web":\n      chain_deep: {warn: 1}\n',
        4,
        'policy.vms["hv01/web"].chain_deep: unknown key; did you mean \'chain_depth\'?',
        id="vm-override-unknown-key",
    ),
    pytest.param(
        "hosts:\n  - {name: hv01, kind: lab, group: prod}\npolicy:\n  groups:\n    prd:\n      chain_depth: {warn: 1}\n",
        5,
        "policy.groups.prd: no host has group 'prd'; did you mean 'prod'?",
        id="policy-group-typo",
    ),
    pytest.param(
        'hosts:\n  - {name: hv01, kind: lab}\npolicy:\n  vms:\n    "hv10/web": {chain_depth: {warn: 1}}\n',
        5,
        "policy.vms[\"hv10/web\"]: no host is named 'hv10'; did you mean 'hv01'?",
        id="policy-vm-unknown-host",
    ),
    pytest.param(
        "policy:\n  exempt:\n    - vm: veeam*\n      rule: checkpoint-age\n",
        3,
        "policy.exempt[0]: missing required key 'reason'",
        id="exemption-without-reason",
    ),
    pytest.param(
        "policy:\n  exempt:\n    - {vm: x, rule: checkpoint-ages, reason: r}\n",
        3,
        "policy.exempt[0].rule: expected a rule id (checkpoint-age,",
        id="exemption-unknown-rule",
    ),
    pytest.param(
        "repositories:\n  - {name: a, path: /r/a, default: true}\n  - {name: b, path: /r/b, default: true}\n",
        3,
        "repositories[1].default: only one repository may be the default (another is marked on line 2)",
        id="two-default-repositories",
    ),
    pytest.param(
        "repositories:\n  - {name: a, path: /r/a}\n  - {name: a, path: /r/b}\n",
        3,
        "repositories[1].name: duplicate repository name 'a' (first defined on line 2)",
        id="duplicate-repository",
    ),
    pytest.param(
        "repositories:\n  - {name: a, path: /r/a}\n  - {name: b, path: /r/b}\n",
        2,
        "repositories: several repositories and none marked default: true",
        id="no-default-among-several",
    ),
    pytest.param(
        "repositories:\n  - name: a\n    path: /r/a\n    retention: {keep_last: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0}\n",
        4,
        "repositories[0].retention: this retention keeps nothing",
        id="retention-keeps-nothing",
    ),
    pytest.param("ui:\n  refresh_seconds: 0.5\n", 2, "ui.refresh_seconds: expected a duration of at least 1s, found 0.5", id="refresh-too-fast"),
    pytest.param(
        "log_level: warn\n", 1, "log_level: expected a log level (debug, info, warning, error), found 'warn'; did you mean 'warning'?", id="log-level"
    ),
    pytest.param("lab:\n  profile: huge\n", 2, "lab.profile: expected a lab profile (demo, bench, scale), found 'huge'", id="lab-profile"),
    pytest.param("ui:\n  theme: a\n  theme: b\n", 3, "ui.theme: duplicate key (first given on line 2)", id="duplicate-key"),
    pytest.param(
        "hosts:\n  - name: a\n    kind: lab\n   bad indent: x\n",
        4,
        "YAML syntax error: did not find expected '-' indicator (column 4, while parsing a block collection that starts on line 2)",
        id="yaml-syntax",
    ),
    pytest.param("ui:\n\ttheme: x\n", 2, "YAML syntax error", id="yaml-tab"),
    pytest.param("", 1, "the file is empty; expected a mapping of settings", id="empty-file"),
    pytest.param("# only a comment\n", 1, "the file is empty", id="comments-only"),
    pytest.param("- hosts\n- policy\n", 1, "expected a mapping of settings (hosts:, policy:, ...), found a list", id="top-level-list"),
    pytest.param("just text\n", 1, "expected a mapping of settings (hosts:, policy:, ...), found 'just text'", id="top-level-scalar"),
    pytest.param("1: x\n", 1, "expected a text key, found 1 (an integer)", id="non-text-key"),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_mistakes_are_refused_with_file_line_key_and_message(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = str(caught.value)
    assert error.startswith(f"{path}:{line}: "), error
    assert message in error, error
    assert "\n" not in error


def test_plain_password_value_never_appears_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, WINRM_HOST.replace("    password_env: HV01_PASSWORD\n", "    password: Sup3r-Secret!\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "Sup3r-Secret!" not in str(caught.value)
    assert "password_command" in str(caught.value) and "password_prompt" in str(caught.value)


def test_yaml_syntax_error_does_not_echo_the_line(tmp_path: Path) -> None:
    # The parser's snippet of the offending line could hold a secret pasted by mistake.
    path = write(tmp_path, "hosts:\n  - name: a\n    note: 'Hunter2-secret\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "YAML syntax error" in str(caught.value)
    assert "Hunter2" not in str(caught.value)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"ui:\n  theme: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:2: the file is not UTF-8 text"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")


def test_exemption_rule_ids_are_the_policy_rules() -> None:
    from hvtui.config import RULE_IDS
    from hvtui.policy import RULES

    assert set(RULE_IDS) == set(RULES)
