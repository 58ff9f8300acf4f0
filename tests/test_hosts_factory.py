"""Building hosts: a host kind is a builder in ``hosts.factory.BUILDERS`` (no branch in
``make_host``); kinds not configured are never imported; an unknown kind is a clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hvtui.clock import FixedClock
from hvtui.config import HostConfig
from hvtui.errors import ConfigError
from hvtui.hosts.base import Host
from hvtui.hosts.factory import BUILDERS, HostContext, make_host
from hvtui.hosts.lab.host import LabHost


def test_a_new_kind_is_one_builder_in_the_table(tmp_path: Path) -> None:
    """A kind added as a table entry is built by make_host with the context it needs, and
    the kinds already there build as before."""
    clock = FixedClock()
    built: list[tuple[HostConfig, HostContext]] = []
    lab = make_host(HostConfig(name="hv1", kind="lab"), lab_dir=tmp_path, clock=clock)

    def build_fake(host_config: HostConfig, context: HostContext) -> Host:
        built.append((host_config, context))
        return lab

    def prompter(_prompt: str) -> str:
        return "not used"

    fake = HostConfig(name="scvmm1", kind="fake")
    host = make_host(fake, lab_dir=tmp_path, clock=clock, secret_prompter=prompter, builders={**BUILDERS, "fake": build_fake})
    assert host is lab
    assert built == [(fake, HostContext(lab_dir=tmp_path, clock=clock, secret_prompter=prompter))]
    assert isinstance(lab, LabHost) and (lab.name, lab.kind) == ("hv1", "lab")
    assert sorted(BUILDERS) == ["lab", "winrm"]


def test_an_unknown_kind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_host(HostConfig(name="hv9", kind="scvmm"), lab_dir=tmp_path, clock=FixedClock())
    assert str(caught.value) == "host 'hv9': unknown kind 'scvmm' (expected lab or winrm)"


def test_only_the_configured_kinds_are_imported(tmp_path: Path) -> None:
    """Lab hosts alone never load the winrm module nor pywinrm; a winrm host loads them
    (without connecting anywhere)."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from hvtui.clock import FixedClock
        from hvtui.config import HostConfig, WinRMSettings
        from hvtui.hosts.factory import make_host

        make_host(HostConfig(name="hv1", kind="lab"), lab_dir=Path(sys.argv[1]), clock=FixedClock())
        print(sorted(m for m in ("winrm", "hvtui.hosts.winrm.host") if m in sys.modules))
        config = HostConfig(name="hv2", kind="winrm", winrm=WinRMSettings(address="192.0.2.1"))
        make_host(config, lab_dir=Path(sys.argv[1]), clock=FixedClock())
        print(sorted(m for m in ("winrm", "hvtui.hosts.winrm.host") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "['hvtui.hosts.winrm.host', 'winrm']"]
