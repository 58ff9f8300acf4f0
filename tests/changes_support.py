"""A small lab estate for the change-window tests: two lab hosts with real VM files, a real
repository, and a core built on them the way the CLI builds one."""

from __future__ import annotations

import random
from pathlib import Path

from lab_support import add_vm, make_host

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.hosts.lab.disk import BLOCK_SIZE, logical_digest
from hvtui.hosts.lab.host import LabHost
from hvtui.paths import Paths

HOST_A = "lab-a"
HOST_B = "lab-b"


def build_estate(root: Path) -> dict[str, tuple[str, str]]:
    """Three VMs on lab-a, two on lab-b: {vm name: (host, vm id)}."""
    vms: dict[str, tuple[str, str]] = {}
    for host_name, names in ((HOST_A, ("web1", "web2", "sql1")), (HOST_B, ("app1", "app2"))):
        host = make_host(root, host_name)
        for seed, name in enumerate(names):
            vms[name] = (host_name, add_vm(host, name, blocks=3, seed=seed))
    return vms


def config_text(root: Path, read_only_b: bool = False) -> str:
    return (
        f"hosts:\n  - name: {HOST_A}\n    kind: lab\n  - name: {HOST_B}\n    kind: lab\n"
        + ("    read_only: true\n" if read_only_b else "")
        + f"repositories:\n  - name: default\n    path: {root / 'repo'}\n    default: true\n"
        f"lab:\n  dir: {root}\n"
    )


def make_core(root: Path, paths: Paths, read_only_b: bool = False, repository: Path | None = None) -> Core:
    config = Config(
        source=root / "config.yaml",
        hosts=(HostConfig(name=HOST_A, kind="lab"), HostConfig(name=HOST_B, kind="lab", read_only=read_only_b)),
        repositories=(RepositoryConfig(name="default", path=repository or root / "repo", default=True),),
    )
    return Core(config, paths, lab_dir=root)


def lab(root: Path, host: str) -> LabHost:
    return LabHost.open(root / host, host, FixedClock())


def checkpoint_names(root: Path, host: str, vm_id: str) -> list[str]:
    return [cp.name for cp in lab(root, host).vm(vm_id).checkpoints]


def disk_digest(root: Path, host: str, vm_id: str) -> str:
    return logical_digest(lab(root, host).disk_path(vm_id))


def write_guest(root: Path, host: str, vm_id: str, seed: int) -> None:
    lab(root, host).write_guest_blocks(vm_id, 0, iter([(0, random.Random(seed).randbytes(BLOCK_SIZE))]))
