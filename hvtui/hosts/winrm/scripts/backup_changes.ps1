$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: backup.changes
# Arguments: vm_id, disk_path, since (an RCT id), offset, length (at most 1 GiB, within the disk).
# Answers ranges in virtual-disk bytes. Helpers come from _prelude.ps1 and _cim.ps1.

$exitCode = Invoke-HvtuiOperation -Body {
    $null = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $path = [string]$HvtuiArgs.disk_path
    $offset = [int64]$HvtuiArgs.offset
    $length = [int64]$HvtuiArgs.length
    $vhd = Hyper-V\Get-VHD -Path $path
    if ($offset -lt 0 -or $length -le 0 -or $length -gt 1073741824 -or ($offset + $length) -gt [int64]$vhd.Size) {
        Stop-HvtuiKind -Kind 'argument' -Message ('window {0}+{1} is not within the {2}-byte disk in at most 1 GiB' -f $offset, $length, $vhd.Size)
    }
    $service = Get-HvtuiService -ClassName Msvm_ImageManagementService
    $arguments = @{
        Path = $path
        LimitId = [string]$HvtuiArgs.since
        TargetSnapshotId = ''
        ByteOffset = [uint64]$offset
        ByteLength = [uint64]$length
    }
    try {
        $result = Invoke-CimMethod -InputObject $service -MethodName GetVirtualDiskChanges -Arguments $arguments
        $null = Wait-HvtuiJob -Result $result -What 'GetVirtualDiskChanges'
    } catch {
        # The id is unknown, another disk's or no longer valid: the caller reads the whole disk.
        Stop-HvtuiKind -Kind 'rct-invalid' -Message ('no changes since {0} for {1}: {2}' -f $HvtuiArgs.since, $path, $_.Exception.Message)
    }
    $offsets = @($result.ChangedByteOffsets)
    $lengths = @($result.ChangedByteLengths)
    $ranges = @()
    for ($i = 0; $i -lt $offsets.Count; $i++) {
        $ranges += , @([int64]$offsets[$i], [int64]$lengths[$i])
    }
    [ordered]@{
        ok = $true
        ranges = $ranges
        processed = [int64]$result.ProcessedByteLength
    }
}
exit $exitCode
