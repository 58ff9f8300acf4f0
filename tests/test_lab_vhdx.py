"""The lab's disks are genuine MS-VHDX: proven with parsers nobody here wrote.

- every base disk passes ``qemu-img check`` and ``qemu-img convert -O raw`` gives exactly the
  bytes the lab's guest wrote (qemu cannot read differencing VHDX);
- every differencing chain, read through its parents by dissect.hypervisor's VHDX reader, gives
  the same virtual content as the lab's own reader, each child's LinkageId is its parent's
  DataWriteGuid as dissect and libvhdi (pyvhdi) read them, and its parent locator holds what
  MS-VHDX allows: a relative path and a Windows-form absolute_win32_path (never a POSIX path),
  from which libvhdi finds the parent.

qemu-img comes from the Debian package qemu-utils (`.ci/run` installs it). These tests FAIL when
it is missing: a skipped proof proves nothing.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import uuid
from pathlib import Path, PureWindowsPath

import pytest
import pyvhdi
from dissect.hypervisor.disk.vhdx import VHDX
from lab_support import MIB, SMALL_DISK, add_vm, make_host, scribble

from hvtui.clock import FixedClock
from hvtui.config import Config, HostConfig, RepositoryConfig
from hvtui.core import Core
from hvtui.errors import HostError
from hvtui.hosts.lab import disk as vdisk
from hvtui.hosts.lab.estate import init_lab, lab_host_names, lab_status
from hvtui.hosts.lab.flatten import flatten_restored
from hvtui.hosts.lab.host import LabHost
from hvtui.hosts.vhdx import format as fmt
from hvtui.hosts.vhdx.file import windows_path
from hvtui.paths import Paths

QEMU_IMG = shutil.which("qemu-img")


@pytest.fixture(scope="module")
def qemu_img() -> str:
    if QEMU_IMG is None:
        pytest.fail(
            "qemu-img is not installed: these tests prove the lab's VHDX with it. "
            "Install it with `apt-get install -y qemu-utils` (.ci/run does so before the test command)."
        )
    return QEMU_IMG


def disk_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".vhdx", ".avhdx") and p.is_file())


def check_base_with_qemu(qemu: str, path: Path, tmp_path: Path, whole: bool = True) -> None:
    """qemu-img check passes and qemu's raw reading equals the lab's, block by block.

    ``whole``: ``qemu-img convert`` of the whole disk. Otherwise ``qemu-img dd`` up to the last
    block the BAT holds (qemu reads every virtual byte, 2 s per 64 GiB: the demo's 80-256 GiB
    disks are read only where data can be; beyond, the BAT qemu-img check accepted says absent).
    """
    check = subprocess.run([qemu, "check", "-f", "vhdx", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, f"qemu-img check {path.name}: {check.stdout}{check.stderr}"
    raw = tmp_path / f"{path.name}.raw"
    with vdisk.DiskChain.open(path) as chain:
        bs, size = chain.block_size, chain.virtual_size
        present = set(chain.top.present_blocks())
        blocks = {i: chain.read_block(i)[: size - i * bs] for i in sorted(present)}
    if whole:
        subprocess.run([qemu, "convert", "-f", "vhdx", "-O", "raw", str(path), str(raw)], check=True, capture_output=True)
    else:
        count = max(present, default=0) + 1
        subprocess.run(
            [qemu, "dd", "-f", "vhdx", "-O", "raw", f"bs={bs}", f"count={count}", f"if={path}", f"of={raw}"],
            check=True,
            capture_output=True,
        )
    try:
        with open(raw, "rb") as fh:
            assert os.fstat(fh.fileno()).st_size == (size if whole else min(size, (max(present, default=0) + 1) * bs))
            for index, data in blocks.items():
                fh.seek(index * bs)
                assert fh.read(bs)[: len(data)] == data, f"{path.name}: block {index} differs between qemu-img and the lab"
            # Everywhere else qemu must give zeros: walk the raw file's data extents (it may be sparse).
            fd, offset = fh.fileno(), 0
            while True:
                try:
                    offset = os.lseek(fd, offset, os.SEEK_DATA)
                except OSError:
                    break
                end = os.lseek(fd, offset, os.SEEK_HOLE)
                for index in range(offset // bs, -(-end // bs)):
                    if index not in present:
                        data = os.pread(fd, bs, index * bs)
                        assert data == bytes(len(data)), f"{path.name}: block {index} is not in the lab's BAT yet qemu reads data"
                offset = end
    finally:
        raw.unlink()


def read_with_dissect(path: Path, blocks: list[int], block_size: int) -> dict[int, bytes]:
    disk = VHDX(path)
    out = {}
    for index in blocks:
        disk.seek(index * block_size)
        out[index] = disk.read(min(block_size, disk.size - index * block_size))
    return out


def check_chain_with_dissect(path: Path) -> int:
    """dissect reads the same virtual content through the chain; returns the chain's depth."""
    with vdisk.DiskChain.open(path) as chain:
        bs, size = chain.block_size, chain.virtual_size
        present: set[int] = set()
        for f in chain.files:
            present.update(f.present_blocks())
        absent = [i for i in (0, chain.top.block_count // 2, chain.top.block_count - 1) if i not in present]
        expected = {i: chain.read_block(i)[: size - i * bs] for i in sorted(present) + absent}
        depth = len(chain.files)
    got = read_with_dissect(path, list(expected), bs)
    for index, data in expected.items():
        assert got[index] == data, f"{path.name}: block {index} differs between dissect.hypervisor and the lab"
    # The linkage: the child names its parent's DataWriteGuid (as dissect parses both files).
    child = VHDX(path)
    while child.parent is not None:
        linkage = uuid.UUID(child.parent_locator.entries["parent_linkage"].strip("{}"))
        assert linkage == uuid.UUID(bytes_le=child.parent.header.data_write_guid), f"{child.path.name}: stale LinkageId"
        check_locator(child.parent_locator.entries, child.parent.path.name)
        check_parent_with_libvhdi(child.path, child.parent.path)
        child = child.parent
    return depth


def check_locator(entries: dict[str, str], parent_name: str) -> None:
    """MS-VHDX's parent locator: the linkage and Windows-form paths only (no POSIX path anywhere)."""
    assert set(entries) <= {"parent_linkage", "relative_path", "volume_path", "absolute_win32_path"}, entries
    assert entries["relative_path"] == ".\\" + parent_name, entries
    absolute = entries["absolute_win32_path"]
    assert re.fullmatch(r"[A-Za-z]:\\[^/:*?\"<>|]+", absolute) and len(absolute) < 260, absolute
    assert PureWindowsPath(absolute).name == parent_name, absolute


def check_parent_with_libvhdi(child: Path, parent: Path) -> None:
    """libvhdi finds the parent by the name in absolute_win32_path (as its own tools do) and links
    it by the LinkageId. (Its reading through a chain is not used: libvhdi 20260901 reads a sector
    bitmap whose BAT entry says not present from file offset 0, where dissect and MS-VHDX read the
    parent.)"""
    f, p = pyvhdi.file(), pyvhdi.file()
    f.open(str(child))
    p.open(str(parent))
    try:
        assert f.disk_type == 4 and PureWindowsPath(f.parent_filename).name == parent.name, f.parent_filename
        assert f.parent_identifier == p.identifier, f"{child.name}: libvhdi reads another linkage"
    finally:
        f.close()
        p.close()


def test_lab_base_disks_pass_qemu_img_and_convert_to_the_guests_bytes(qemu_img: str, tmp_path: Path) -> None:
    host = make_host(tmp_path)
    rng = random.Random(5)
    vm_id = add_vm(host, state="Running", disks=2)
    scribble(host, vm_id, rng, writes=6)
    host.write_guest_data(vm_id, 1, SMALL_DISK - 5000, b"the last bytes" * 300)  # the disk's very end
    cp = host.create_checkpoint(vm_id, "one", "Standard")
    scribble(host, vm_id, rng, writes=6)
    host.remove_checkpoint(vm_id, cp.id)  # merges the child's sectors into the base
    assert host.vm(vm_id).disks[0].depth == 0
    for index in range(2):
        base = Path(host.vm(vm_id).disks[index].path)
        check_base_with_qemu(qemu_img, base, tmp_path)
        raw = tmp_path / "full.raw"
        subprocess.run([qemu_img, "convert", "-O", "raw", str(base), str(raw)], check=True)
        assert raw.read_bytes() == host.read_disk(vm_id, index, 0, SMALL_DISK)  # the whole disk, byte for byte
        raw.unlink()


def test_every_disk_of_the_demo_lab_is_genuine_vhdx(qemu_img: str, tmp_path: Path) -> None:
    clock = FixedClock()
    lab_dir = tmp_path / "lab"
    init_lab(lab_dir, "demo", clock, size=0.02)
    for name in lab_host_names(lab_dir):
        LabHost.open(lab_dir / name, name, clock).inventory(10)  # guests catch up: writes into the chains
    bases = differencing = deepest = 0
    for path in disk_files(lab_dir):
        with vdisk.DiskFile(path) as f:
            has_parent = f.parent_name is not None
        if has_parent:
            assert path.suffix == ".avhdx"
            deepest = max(deepest, check_chain_with_dissect(path))
            differencing += 1
        else:
            check_base_with_qemu(qemu_img, path, tmp_path, whole=False)
            read_with_dissect(path, [0], 1 << 20)  # dissect opens every base too
            bases += 1
    assert bases >= 14 and differencing >= 15 and deepest >= 9


def test_checkpoint_chains_with_partial_blocks_read_the_same_in_dissect(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    rng = random.Random(11)
    vm_id = add_vm(host, state="Running")
    cps = []
    for n in range(4):
        cps.append(host.create_checkpoint(vm_id, f"cp{n}", "Standard"))
        scribble(host, vm_id, rng, writes=5)
        host.write_guest_data(vm_id, 0, n * MIB + 513, b"unaligned" * 100)  # sectors, not blocks
    top = Path(host.vm(vm_id).disks[0].path)
    with vdisk.DiskFile(top) as f:
        states = {f.block_state(i) for i in f.present_blocks()}
    assert fmt.PAYLOAD_PARTIALLY_PRESENT in states  # the sector bitmaps are really used
    assert check_chain_with_dissect(top) == 5
    host.remove_checkpoint(vm_id, cps[1].id)  # a middle one: merges and a new linkage
    host.apply_checkpoint(vm_id, cps[2].id)
    scribble(host, vm_id, rng, writes=3)
    for path in disk_files(host.vm_folder(vm_id)):
        with vdisk.DiskFile(path) as f:
            if f.parent_name is not None:
                check_chain_with_dissect(path)


def test_a_restored_flattened_disk_is_a_vhdx_qemu_reads(qemu_img: str, tmp_path: Path) -> None:
    host = make_host(tmp_path)
    rng = random.Random(3)
    vm_id = add_vm(host, state="Running")
    host.create_checkpoint(vm_id, "cp", "Standard")
    scribble(host, vm_id, rng, writes=4)
    expected = host.read_disk(vm_id, 0, 0, SMALL_DISK)
    staged = tmp_path / "staged"
    shutil.copytree(host.vm_folder(vm_id), staged)
    config = json.loads(next(staged.glob("*.vmcx")).read_text())
    flat = flatten_restored(config, staged)
    (base,) = [staged / name for name in flat["files"]]
    check_base_with_qemu(qemu_img, base, tmp_path)
    assert vdisk.read_logical(base) == expected


def check_restored_chain(qemu: str, top: Path, expected: bytes, tmp_path: Path, where: bool = False) -> int:
    """Every file of a restored chain passes qemu-img check and the top reads as the guest's bytes.

    qemu-img (7.2, and every release so far) opens no differencing VHDX at all ("Operation not
    supported"): a .avhdx it refuses so is proven instead by dissect.hypervisor reading the whole top
    through the chain, with the linkage and locator checks; the base, which qemu does open, by both.
    ``where``: each absolute_win32_path names the parent where it is now (a folder restore keeps the
    frozen files byte for byte, so theirs name the lab's folder). Returns the chain's length."""
    chain: list[Path] = []
    at: Path | None = top
    while at is not None:
        chain.append(at)
        with vdisk.DiskFile(at) as f:  # our parser checks both headers' and region tables' CRC-32C
            at = at.parent / f.parent_name if f.parent_name else None
    for path in chain:
        check = subprocess.run([qemu, "check", "-f", "vhdx", str(path)], capture_output=True, text=True)
        if path is chain[-1] or check.returncode == 0:
            assert check.returncode == 0, f"qemu-img check {path.name}: {check.stdout}{check.stderr}"
        else:
            assert "Operation not supported" in check.stderr, f"qemu-img check {path.name}: {check.stdout}{check.stderr}"
    convert = subprocess.run([qemu, "convert", "-f", "vhdx", "-O", "raw", str(top), str(tmp_path / "top.raw")], capture_output=True)
    if convert.returncode == 0:
        assert (tmp_path / "top.raw").read_bytes() == expected, f"{top.name}: qemu-img reads other bytes"
    disk = VHDX(top)
    assert disk.read(len(expected)) == expected, f"{top.name}: dissect reads other bytes through the chain"
    if len(chain) > 1:
        check_chain_with_dissect(top)  # linkage and MS-VHDX locator of every child, libvhdi finds each parent
    for child, parent in zip(chain, chain[1:], strict=False) if where else ():
        entries = VHDX(child).parent_locator.entries
        assert entries["absolute_win32_path"] == windows_path(parent), (child.name, entries)
    base_raw = tmp_path / "base.raw"
    subprocess.run([qemu, "convert", "-f", "vhdx", "-O", "raw", str(chain[-1]), str(base_raw)], check=True, capture_output=True)
    assert base_raw.read_bytes() == vdisk.read_logical(chain[-1]), f"{chain[-1].name}: qemu-img reads other bytes"
    return len(chain)


def test_a_restore_keeping_the_chain_gives_valid_vhdx_files_that_read_as_the_guests_bytes(
    qemu_img: str, tmp_path: Path, paths: Paths
) -> None:
    clock = FixedClock()
    host = LabHost.create(tmp_path / "lab" / "lab-t1", "lab-t1", clock, volume_size=1 << 40)
    rng = random.Random(17)
    vm_id = add_vm(host, state="Running", disks=2)
    for n in range(2):
        host.create_checkpoint(vm_id, f"cp{n}", "Standard")
        scribble(host, vm_id, rng, writes=4)
        scribble(host, vm_id, rng, writes=2, disk=1)
        host.write_guest_data(vm_id, 0, n * MIB + 513, b"unaligned" * 100)
    config = Config(
        source=tmp_path / "config.yaml",
        hosts=(HostConfig(name="lab-t1", kind="lab"),),
        repositories=(RepositoryConfig(name="default", path=tmp_path / "repo", default=True),),
    )
    core = Core(config, paths, clock=clock, lab_dir=tmp_path / "lab", hosts={"lab-t1": host})
    try:
        point = core.backups.backup("lab-t1", vm_id, "full").point_id
        # What the backup froze: the guest's disks as they were (the backup's checkpoint is merged now).
        expected = [host.read_disk(vm_id, i, 0, SMALL_DISK) for i in range(2)]
        folder = tmp_path / "tree"
        core.backups.restore(point, to_dir=folder, keep_checkpoints=True)
        copy = core.backups.restore(point, as_name="vm1-tree", keep_checkpoints=True)
    finally:
        core.close()
    config_doc = json.loads(next(folder.glob("*.vmcx")).read_text())
    tops = [folder / d["current"] for d in config_doc["disks"]]
    assert [check_restored_chain(qemu_img, top, data, tmp_path) for top, data in zip(tops, expected, strict=True)] == [3, 3]
    vm = host.vm(copy.vm_id)
    assert [cp.name for cp in vm.checkpoints] == ["cp0", "cp1"]
    for index, data in enumerate(expected):
        assert check_restored_chain(qemu_img, Path(vm.disks[index].path), data, tmp_path, where=True) == 3


def test_a_non_empty_log_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "d.vhdx"
    vdisk.create_disk(path, SMALL_DISK)
    header = fmt.Header(7, uuid.uuid4(), uuid.uuid4(), log_guid=uuid.uuid4())
    with open(path, "r+b") as fh:
        fh.seek(fmt.HEADER_OFFSETS[0])
        fh.write(header.pack())
    with pytest.raises(HostError, match=r"d\.vhdx: the VHDX log is not empty: the file needs a log replay first"):
        vdisk.DiskFile(path)
    old = tmp_path / "old.vhdx"
    old.write_bytes(vdisk.OLD_FORMAT_MAGIC + struct.pack("<I", 1) + bytes(100))
    with pytest.raises(HostError, match=r"old\.vhdx: not a VHDX file"):
        vdisk.read_logical(old)


def make_old_format_lab(lab_dir: Path) -> None:
    """A lab as hvtui wrote it before VHDX: host state format 1, disk files in the own format."""
    init_lab(lab_dir, "demo", FixedClock(), size=0.02)
    info = json.loads((lab_dir / "lab.json").read_text())
    (lab_dir / "lab.json").write_text(json.dumps(dict(info, format=1)))
    for name in lab_host_names(lab_dir):
        state_file = lab_dir / name / "host.json"
        state_file.write_text(json.dumps(dict(json.loads(state_file.read_text()), format=1)))
        for path in disk_files(lab_dir / name):
            with open(path, "r+b") as fh:
                fh.write(vdisk.OLD_FORMAT_MAGIC + struct.pack("<I", 1))


def test_an_old_format_lab_is_named_and_rebuilt_by_reset(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    make_old_format_lab(lab_dir)
    name = lab_host_names(lab_dir)[0]
    with pytest.raises(HostError, match=r"built by an older hvtui whose disk files were its own format, not VHDX: rebuild the lab with `hvtui lab reset`") as info:
        LabHost.open(lab_dir / name, name, FixedClock()).inventory(5)
    assert info.value.kind == "protocol"
    assert all("not VHDX" in host["error"] for host in lab_status(lab_dir)["hosts"])

    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"), XDG_STATE_HOME=str(tmp_path / "s"))
    cli = [sys.executable, "-m", "hvtui", "--lab-dir", str(lab_dir)]
    status = subprocess.run([*cli, "lab", "status"], capture_output=True, text=True, env=env)
    assert status.returncode == 1 and "hvtui lab reset" in status.stdout and "Traceback" not in status.stderr
    init = subprocess.run([*cli, "lab", "init"], capture_output=True, text=True, env=env)
    assert init.returncode != 0 and "built by an older hvtui with non-VHDX disk files" in init.stderr
    reset = subprocess.run([*cli, "lab", "reset", "--yes"], capture_output=True, text=True, env=env)
    assert reset.returncode == 0, reset.stderr
    for name in lab_host_names(lab_dir):
        assert LabHost.open(lab_dir / name, name, FixedClock()).inventory(5).vms
    for path in disk_files(lab_dir):
        assert path.read_bytes()[:8] == b"vhdxfile"
