"""The PowerShell templates: they parse, follow the script conventions, and take data only from JSON."""

from __future__ import annotations

import base64
import re
from importlib import resources
from pathlib import Path

import pytest
from powershell_grammar import parse, syntax_problems
from tree_sitter import Node

from hvtui.hosts.winrm.encoding import bootstrap_command, script_text
from hvtui.hosts.winrm.operations import INCLUDES, PRELUDE, SCRIPTS, full_script

SCRIPT_DIR = Path(str(resources.files("hvtui.hosts.winrm").joinpath("scripts")))
ALL_TEMPLATES = sorted(SCRIPT_DIR.glob("*.ps1"))
OPERATION_TEMPLATES = sorted(SCRIPTS.values())
PROLOGUE = "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'"
HYPERV_CMDLETS = (
    "Get-VM",
    "Set-VM",
    "Get-VMSnapshot",
    "Checkpoint-VM",
    "Restore-VMSnapshot",
    "Remove-VMSnapshot",
    "Rename-VMSnapshot",
    "Get-VMHardDiskDrive",
    "Get-VHD",
    "Get-VMHardDiskDrive",
    "Rename-VMSnapshot",
    "Set-VHD",
    "Test-VHD",
    "Compare-VM",
    "Import-VM",
    "Rename-VM",
    "Set-VMHardDiskDrive",
    "Disconnect-VMNetworkAdapter",
)

def test_the_templates_are_all_there() -> None:
    names = {path.stem for path in ALL_TEMPLATES}
    assert names == {"bootstrap", PRELUDE, *OPERATION_TEMPLATES, *{n for names in INCLUDES.values() for n in names}}
    assert set(SCRIPTS) == {
        "inventory",
        "checkpoint.create",
        "checkpoint.apply",
        "checkpoint.remove",
        "checkpoint.rename",
        "checkpoint.type",
        "backup.begin",
        "backup.changes",
        "backup.end",
        "backup.leftovers",
        "restore.prepare",
        "restore.import",
    }


def test_the_checker_finds_error_and_missing_nodes() -> None:
    # Without this the parse test below could pass by never looking.
    assert any(not p.snippet.startswith("missing ") for p in syntax_problems("$x = @{ b = }\n"))
    assert any(p.snippet == "missing '}'" for p in syntax_problems("if ($x) {\n    $y = 1\n"))
    assert syntax_problems("$x = [ordered]@{ a = 1 }\n") == []


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_template_parses_without_errors(path: Path) -> None:
    assert syntax_problems(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("op", sorted(SCRIPTS))
def test_the_script_sent_for_each_operation_parses(op: str) -> None:
    assert syntax_problems(full_script(op)) == []


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_templates_are_ascii_and_avoid_forms_the_grammar_misreads(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.isascii(), "non-ASCII text would depend on the code page"
    assert ".ForEach(" not in text and ".Where(" not in text
    # one-line switch statements are misparsed; there is no reason for any switch here
    assert not re.search(r"\bswitch\s*\(", text, re.IGNORECASE)


@pytest.mark.parametrize("name", [PRELUDE, "_cim", *OPERATION_TEMPLATES])
def test_every_script_starts_with_the_prologue(name: str) -> None:
    assert script_text(name).startswith(PROLOGUE + "\n")


@pytest.mark.parametrize("name", OPERATION_TEMPLATES)
def test_operations_write_one_document_and_exit_with_its_code(name: str) -> None:
    text = script_text(name)
    assert "$exitCode = Invoke-HvtuiOperation -Body {" in text
    assert text.rstrip().endswith("exit $exitCode")
    assert "ConvertTo-Json" not in text  # only the prelude serialises, once


def test_the_prelude_serialises_as_the_contract_says() -> None:
    text = script_text(PRELUDE)
    assert "ConvertTo-Json -InputObject $Document -Depth 6 -Compress" in text
    assert "[Console]::Out.WriteLine('<<<HVTUI-BEGIN>>>')" in text
    assert "[Console]::Out.WriteLine('<<<HVTUI-END>>>')" in text
    assert "fqid = [string]$_.FullyQualifiedErrorId" in text
    assert ".ToUniversalTime().ToString('o')" in text


def command_names(source: str) -> list[str]:
    names: list[str] = []
    stack: list[Node] = [parse(source)]
    while stack:
        node = stack.pop()
        if node.type == "command_name" and node.text is not None:
            names.append(node.text.decode("utf-8"))
        stack.extend(node.children)
    return names


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_hyperv_cmdlets_are_module_qualified(path: Path) -> None:
    names = command_names(path.read_text(encoding="utf-8"))
    assert names, "the walk found no commands at all"
    unqualified = [name for name in names if name.lower() in {c.lower() for c in HYPERV_CMDLETS}]
    assert unqualified == []
    if path.stem in OPERATION_TEMPLATES:
        assert any(name.startswith("Hyper-V\\") for name in names + command_names(script_text(PRELUDE)))


@pytest.mark.parametrize("name", [PRELUDE, "_cim", *OPERATION_TEMPLATES])
def test_arguments_come_only_from_the_json_variable(name: str) -> None:
    text = script_text(name)
    assert not re.search(r"\$args\b", text, re.IGNORECASE)
    assert "GetCommandLineArgs" not in text
    assert "$env:" not in text.replace("$env:COMPUTERNAME", "")
    assert "Invoke-Expression" not in text and "iex " not in text


def test_the_inventory_template_covers_what_the_contract_needs() -> None:
    text = script_text("inventory")
    assert "-SnapshotType Recovery" in script_text(PRELUDE)  # Recovery checkpoints, deduplicated by Id
    assert "Hyper-V\\Get-VHD -Path" in text and "ParentPath" in text  # chains walked with Get-VHD
    for key in (
        "logical_processors", "memory_bytes", "volumes", "free", "uptime_seconds", "heartbeat", "generation",
        "version", "checkpoint_type", "parent_checkpoint_id", "stray_disk_files", "chain", "parent_path",
    ):  # fmt: skip
        assert re.search(rf"\b{key}\b", text), key


def test_remove_supports_a_subtree() -> None:
    assert "-IncludeAllChildSnapshots" in script_text("checkpoint_remove")


def test_the_bootstrap_fits_the_command_line_and_decodes_to_the_file() -> None:
    command = bootstrap_command()
    assert len(command) < 8191
    assert command.startswith("powershell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand ")
    decoded = base64.b64decode(command.rsplit(" ", 1)[1]).decode("utf-16-le")
    assert decoded == script_text("bootstrap")
    assert '"`0`0`0`0"' in decoded and "ConvertFrom-Json" in decoded and "$HvtuiArgs" in decoded


def test_create_checks_the_type_the_client_read_before_switching_it() -> None:
    # The client restores an abandoned create's switch to the type it read; the script must
    # not switch from any other type.
    text = script_text("checkpoint_create")
    guard = text.index("HvtuiCheckpointTypeChanged")
    assert "$HvtuiArgs.expected_type" in text[:guard]
    assert guard < text.index("Hyper-V\\Set-VM -VM $vm -CheckpointType $wanted")


def test_the_type_is_put_back_only_while_it_is_still_the_switched_one() -> None:
    text = script_text("checkpoint_type")
    condition = text.index("$current -eq [string]$HvtuiArgs.restore_from")
    assert condition < text.index("Hyper-V\\Set-VM -VM $vm -CheckpointType ([string]$restoreTo)")


BACKUP_OPS = ("backup.begin", "backup.changes", "backup.end", "backup.leftovers")


@pytest.mark.parametrize("op", BACKUP_OPS)
def test_backup_scripts_carry_the_cim_helpers_between_prelude_and_template(op: str) -> None:
    text = full_script(op)
    assert text.index("function Invoke-HvtuiOperation") < text.index("function Wait-HvtuiJob")
    assert text.index("function Wait-HvtuiJob") < text.index(f"# op: {op}")
    assert "function Wait-HvtuiJob" not in full_script("checkpoint.create")


def test_backup_operations_use_the_wmi_calls_the_contract_names() -> None:
    cim = script_text("_cim")
    assert "$HvtuiNamespace = 'root\\virtualization\\v2'" in cim
    assert "ErrorDescription" in cim and "JobState" in cim and "4096" in cim
    begin = script_text("backup_begin")
    for needle in (
        "Msvm_VirtualSystemSnapshotService", "-MethodName CreateSnapshot", "SnapshotType = [uint16]32768",
        "Msvm_VirtualSystemSnapshotSettingData", "ConsistencyLevel", "IgnoreNonSnapshottableDisks = $true",
        "GuestBackupType = [uint16]1", "-NewName ([string]$HvtuiArgs.label)", "Stop-HvtuiKind -Kind 'busy'",
        "Stop-HvtuiKind -Kind 'consistency'", "reference_points", "virtual_size", "disk_id",
    ):  # fmt: skip
        assert needle in begin, needle
    changes = script_text("backup_changes")
    assert "-MethodName GetVirtualDiskChanges" in changes and "Stop-HvtuiKind -Kind 'rct-invalid'" in changes
    assert "1073741824" in changes and "ProcessedByteLength" in changes
    end = script_text("backup_end")
    for needle in ("-MethodName ConvertToReferencePoint", "-MethodName DestroyReferencePoint", "already_gone",
                   "Hyper-V\\Remove-VMSnapshot"):  # fmt: skip
        assert needle in end, needle
    leftovers = script_text("backup_leftovers")
    assert "-SnapshotType Recovery" in leftovers and "$HvtuiLabelPrefix" in leftovers
    assert "$HvtuiLabelPrefix = 'hvtui backup '" in cim


def test_ids_reach_wql_filters_only_as_parsed_guids() -> None:
    # A WQL filter is text: an id from the arguments goes in only after [guid]::TryParse.
    cim = script_text("_cim")
    for line in cim.splitlines():
        if "-Filter" in line:
            assert "$guid" in line and "$HvtuiArgs" not in line, line
    for name in ("backup_begin", "backup_changes", "backup_end", "backup_leftovers"):
        assert "-Filter" not in script_text(name)


def test_a_failure_kind_reaches_the_document() -> None:
    prelude = script_text(PRELUDE)
    assert "$failure.fqid -match '^HvtuiKind-([a-z-]+)'" in prelude
    assert "$failure['kind'] = $Matches[1]" in prelude
    assert "-ErrorId ('HvtuiKind-{0}' -f $Kind)" in script_text("_cim")
def test_prepare_checks_the_space_before_creating_the_folder() -> None:
    text = script_text("restore_prepare")
    space = text.index("'HvtuiKind-space'")
    assert "$bytes * 1.1" in text[:space]  # 10% to spare, as the contract says
    assert space < text.index("CreateDirectory($folder)")
    assert "free = $free" in text


def test_import_as_new_takes_every_disk_from_the_restore_folder() -> None:
    text = script_text("restore_import")
    compare = "Hyper-V\\Compare-VM -Path $ConfigPath -Copy -GenerateNewId -VirtualMachinePath $Destination"
    assert compare in text
    assert "-VhdDestinationPath" in text and "-SnapshotFilePath" in text
    # Disks are pointed at the restored copies before the import: on the VM's own host the
    # configuration names the live VM's disks, which a copy must never take.
    new = text[text.index("if ($mode -eq 'new')") : text.index("elseif ($mode -eq 'in_place')")]
    assert new.index("Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path $restored") < new.index("Import-VM -CompatibilityReport $report")
    assert new.index("Import-VM") < new.index("Rename-VM -VM $vm -NewName ([string]$HvtuiArgs.new_name)")
    assert new.index("Rename-VM") < new.index("Assert-HvtuiDisks -VM $vm")
    # A missing switch is fixed and reported; any other incompatibility is refused by kind.
    assert "Disconnect-VMNetworkAdapter" in new and "$warnings.Add(" in new
    assert "Stop-HvtuiIncompatible" in new and "'HvtuiKind-incompatible'" in text


def test_import_in_place_only_over_an_off_vm_and_keeps_the_old_disks_until_they_pass() -> None:
    text = script_text("restore_import")
    in_place = text[text.index("elseif ($mode -eq 'in_place')") :]
    assert in_place.index("-ne 'Off'") < in_place.index("'HvtuiKind-state'") < in_place.index("[System.IO.File]::Move(")
    assert "+ '.hvtui-old'" in in_place
    # Old disks are deleted only after the check, and put back when anything failed.
    check = in_place.index("Assert-HvtuiDisks -VM $vm")
    assert check < in_place.index("[System.IO.File]::Delete($target + '.hvtui-old')")
    catch = in_place.index("} catch {")
    assert check < catch < in_place.index("[System.IO.File]::Move($target + '.hvtui-old', $target)")
    assert "throw" in in_place[catch:]
    assert "Test-VHD -Path $drive.Path" in text and "'HvtuiKind-disk-check'" in text


def test_the_folder_is_removed_only_after_a_successful_import() -> None:
    text = script_text("restore_import")
    assert text.rindex("Assert-HvtuiDisks") < text.index("[System.IO.Directory]::Delete($folder, $true)")


def test_failure_kinds_travel_in_the_failure_document() -> None:
    text = script_text(PRELUDE)
    catch = text[text.index("} catch {") :]
    assert "-match '^HvtuiKind-([a-z-]+)'" in catch and "$failure['kind'] = $Matches[1]" in catch
    for name in ("restore_prepare", "restore_import"):
        assert "if ([int]$HvtuiArgs.v -ne 1) {" in script_text(name)


def test_import_flattens_a_new_vm_by_removing_the_copys_checkpoints_before_the_disk_check() -> None:
    text = script_text("restore_import")
    new = text[text.index("if ($mode -eq 'new')") : text.index("elseif ($mode -eq 'in_place')")]
    assert "if ([bool]$HvtuiArgs.flatten) {" in new
    assert new.index("Rename-VM") < new.index("Remove-HvtuiCheckpoints -VM $vm") < new.index("Assert-HvtuiDisks")
    helper = text[text.index("function Remove-HvtuiCheckpoints") : text.index("function Get-HvtuiCompareReport")]
    assert "-IncludeAllChildSnapshots" in helper and "'MergingDisks'" in helper and "'HvtuiKind-disk-check'" in helper
