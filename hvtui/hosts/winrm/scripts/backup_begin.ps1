$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: backup.begin
# Arguments: vm_id, consistency (application | crash | prefer-application), label.
# Helpers come from _prelude.ps1 and _cim.ps1.

function New-HvtuiSnapshotSettings {
    # The embedded Msvm_VirtualSystemSnapshotSettingData CreateSnapshot takes, as text.
    param([int]$Level)
    $settings = New-CimInstance -Namespace $HvtuiNamespace -ClassName Msvm_VirtualSystemSnapshotSettingData -ClientOnly -Property @{
        ConsistencyLevel = [uint16]$Level
        IgnoreNonSnapshottableDisks = $true
        GuestBackupType = [uint16]1
    }
    $serializer = [Microsoft.Management.Infrastructure.Serialization.CimSerializer]::Create()
    $options = [Microsoft.Management.Infrastructure.Serialization.InstanceSerializationOptions]::None
    return [System.Text.Encoding]::Unicode.GetString($serializer.Serialize($settings, $options))
}

function New-HvtuiRecoveryCheckpoint {
    # CreateSnapshot with SnapshotType 32768 (Recovery); returns the new checkpoint's id.
    param($CimVM, [int]$Level)
    $service = Get-HvtuiService -ClassName Msvm_VirtualSystemSnapshotService
    $arguments = @{
        AffectedSystem = $CimVM
        SnapshotSettings = (New-HvtuiSnapshotSettings -Level $Level)
        SnapshotType = [uint16]32768
    }
    $result = Invoke-CimMethod -InputObject $service -MethodName CreateSnapshot -Arguments $arguments
    $job = Wait-HvtuiJob -Result $result -What 'CreateSnapshot'
    $snapshot = $result.ResultingSnapshot
    if ($null -eq $snapshot -and $null -ne $job) {
        $snapshot = Get-CimAssociatedInstance -InputObject $job -ResultClassName Msvm_VirtualSystemSettingData | Select-Object -First 1
    }
    if ($null -eq $snapshot) {
        Stop-Hvtui -Message 'CreateSnapshot finished without naming the new checkpoint' -ErrorId 'HvtuiCimFailed' -Category InvalidResult
    }
    return ([string]$snapshot.InstanceID).Replace('Microsoft:', '')
}

function Get-HvtuiFileTime {
    param([string]$Path)
    return Get-HvtuiTime -Value (Get-Item -LiteralPath $Path).LastWriteTime
}

$exitCode = Invoke-HvtuiOperation -Body {
    $consistency = [string]$HvtuiArgs.consistency
    if (@('application', 'crash', 'prefer-application') -notcontains $consistency) {
        Stop-HvtuiKind -Kind 'argument' -Message ('consistency must be application, crash or prefer-application, not {0}' -f $consistency)
    }
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    foreach ($existing in @(Get-HvtuiCheckpoints -VM $vm)) {
        $type = Get-HvtuiName -Value $existing.SnapshotType
        if ($type -eq 'Recovery' -and ([string]$existing.Name).StartsWith($HvtuiLabelPrefix)) {
            Stop-HvtuiKind -Kind 'busy' -Message ('VM {0} already has the hvtui Recovery checkpoint {1} ({2})' -f $vm.Name, $existing.Name, $existing.Id)
        }
    }
    $cimVM = Get-HvtuiCimVM -Id $vm.Id.ToString()
    $levels = @(1)
    if ($consistency -eq 'crash') {
        $levels = @(2)
    } elseif ($consistency -eq 'prefer-application') {
        $levels = @(1, 2)
    }
    $warnings = @()
    $checkpointId = $null
    $used = $null
    foreach ($level in $levels) {
        try {
            $checkpointId = New-HvtuiRecoveryCheckpoint -CimVM $cimVM -Level $level
            $used = $level
            break
        } catch {
            if ($level -ne 1) {
                throw
            }
            if ($levels.Count -eq 1) {
                Stop-HvtuiKind -Kind 'consistency' -Message ('An application-consistent checkpoint of {0} failed: {1}' -f $vm.Name, $_.Exception.Message)
            }
            $warnings += ('application consistency failed ({0}); the checkpoint is crash-consistent' -f $_.Exception.Message)
        }
    }
    $checkpoint = Find-HvtuiCheckpoint -VM $vm -Id $checkpointId
    Hyper-V\Rename-VMSnapshot -VMSnapshot $checkpoint -NewName ([string]$HvtuiArgs.label)
    $files = @()
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VMSnapshot $checkpoint)) {
        $path = [string]$drive.Path
        while ($path) {
            $vhd = Hyper-V\Get-VHD -Path $path
            $files += [ordered]@{
                role = 'disk'
                path = $path
                size = [int64]$vhd.FileSize
                mtime = Get-HvtuiFileTime -Path $path
                disk_id = [string]$vhd.DiskIdentifier
                format = Get-HvtuiName -Value $vhd.VhdFormat
                vhd_type = Get-HvtuiName -Value $vhd.VhdType
                virtual_size = [int64]$vhd.Size
                block_size = [int64]$vhd.BlockSize
                logical_sector_size = [int64]$vhd.LogicalSectorSize
                parent_path = $(if ($vhd.ParentPath) { [string]$vhd.ParentPath } else { $null })
                controller = Get-HvtuiName -Value $drive.ControllerType
                controller_number = [int]$drive.ControllerNumber
                controller_location = [int]$drive.ControllerLocation
            }
            $path = [string]$vhd.ParentPath
        }
    }
    $base = Join-Path -Path $vm.ConfigurationLocation -ChildPath ('Virtual Machines\{0}' -f $vm.Id.ToString().ToUpper())
    $configPath = $base + '.vmcx'
    foreach ($pair in @(@('config', '.vmcx'), @('state', '.vmrs'), @('guest-state', '.vmgs'))) {
        $path = $base + $pair[1]
        if (Test-Path -LiteralPath $path) {
            $files += [ordered]@{
                role = $pair[0]
                path = $path
                size = [int64](Get-Item -LiteralPath $path).Length
                mtime = Get-HvtuiFileTime -Path $path
            }
        }
    }
    $names = @{ 1 = 'application'; 2 = 'crash' }
    [ordered]@{
        ok = $true
        checkpoint_id = $checkpointId
        consistency = $names[$used]
        warnings = $warnings
        vm = [ordered]@{
            id = $vm.Id.ToString()
            name = [string]$vm.Name
            generation = [int]$vm.Generation
            version = [string]$vm.Version
            state = Get-HvtuiName -Value $vm.State
            config_path = $configPath
        }
        files = $files
        reference_points = (Get-HvtuiReferencePoints -CimVM $cimVM)
    }
}
exit $exitCode
