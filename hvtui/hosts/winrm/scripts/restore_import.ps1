$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: restore.import
# Arguments: folder (where the restored files were written), config_path (the restored VM
# configuration, inside folder), mode (new | in_place), vm_id (in_place), new_name (new),
# destination (new: the folder the VM is imported into), flatten (new: true gives one disk per
# drive and no checkpoints, by removing the copy's checkpoints). Helpers come from _prelude.ps1.
# new: Compare-VM -Copy -GenerateNewId, every disk taken from folder (never from the path the
# configuration names: on the VM's own host that is the live VM's disk), safe fixes reported as
# warnings, anything else refused as kind incompatible; Import-VM; Rename-VM; Test-VHD.
# in_place: only for a VM that is Off; the disks are replaced, the old ones kept beside them
# (*.hvtui-old) until every restored disk passes Test-VHD. The folder is removed after success.

# Compare-VM's message ids with a safe fix (unverified beyond Microsoft's published examples).
$HvtuiSwitchMissing = 33012
$HvtuiDiskNotFound = 40010

function Stop-HvtuiIncompatible {
    param([string]$Message)
    Stop-Hvtui -Message $Message -ErrorId 'HvtuiKind-incompatible' -Category InvalidData
}

function Get-HvtuiRestoredDisk {
    # The restored copy of a disk: the file of the same name in the restore folder.
    param([string]$Folder, [string]$Path)
    $candidate = [System.IO.Path]::Combine($Folder, [System.IO.Path]::GetFileName($Path))
    if (-not [System.IO.File]::Exists($candidate)) {
        Stop-HvtuiIncompatible -Message ('The restore point has no file for the disk {0}' -f $Path)
    }
    return $candidate
}

function Repair-HvtuiParents {
    # Differencing disks name their parent by its old path: point them at the restored parent.
    param([string]$Folder)
    foreach ($file in [System.IO.Directory]::GetFiles($Folder, '*.avhdx')) {
        $vhd = Hyper-V\Get-VHD -Path $file
        if ($vhd.ParentPath) {
            $parent = Get-HvtuiRestoredDisk -Folder $Folder -Path $vhd.ParentPath
            if ($parent -ne $vhd.ParentPath) {
                Hyper-V\Set-VHD -Path $file -ParentPath $parent -IgnoreIdMismatch
            }
        }
    }
}

function Assert-HvtuiDisks {
    param($VM)
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $VM)) {
        if (-not (Hyper-V\Test-VHD -Path $drive.Path)) {
            Stop-Hvtui -Message ('The restored disk {0} fails Test-VHD' -f $drive.Path) -ErrorId 'HvtuiKind-disk-check' -Category InvalidData
        }
    }
}

function Remove-HvtuiCheckpoints {
    # Removing every checkpoint of the imported copy merges each drive's chain into one disk.
    param($VM)
    foreach ($snapshot in @(Hyper-V\Get-VMSnapshot -VM $VM)) {
        if (-not $snapshot.ParentSnapshotId) {
            Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -IncludeAllChildSnapshots -Confirm:$false
        }
    }
    $deadline = (Get-Date).AddHours(1)
    do {
        $states = @(foreach ($status in @((Hyper-V\Get-VM -Id $VM.Id).OperationalStatus)) { Get-HvtuiName -Value $status })
        $merging = $states -contains 'MergingDisks'
        if ($merging) {
            Start-Sleep -Seconds 1
        }
    } while ($merging -and (Get-Date) -lt $deadline)
    if ($merging) {
        Stop-Hvtui -Message ('The checkpoints of {0} are still merging after an hour' -f $VM.Name) -ErrorId 'HvtuiKind-disk-check' -Category OperationTimeout
    }
}

function Get-HvtuiCompareReport {
    param([string]$ConfigPath, [string]$Destination)
    return Hyper-V\Compare-VM -Path $ConfigPath -Copy -GenerateNewId -VirtualMachinePath $Destination -VhdDestinationPath ([System.IO.Path]::Combine($Destination, 'Virtual Hard Disks')) -SnapshotFilePath ([System.IO.Path]::Combine($Destination, 'Snapshots'))
}

$exitCode = Invoke-HvtuiOperation -Body {
    if ([int]$HvtuiArgs.v -ne 1) {
        Stop-Hvtui -Message ('This script speaks wire version 1, not {0}' -f $HvtuiArgs.v) -ErrorId 'HvtuiKind-argument' -Category InvalidArgument
    }
    $folder = [string]$HvtuiArgs.folder
    $configPath = [string]$HvtuiArgs.config_path
    $mode = [string]$HvtuiArgs.mode
    if (-not [System.IO.File]::Exists($configPath)) {
        Stop-Hvtui -Message ('No restored VM configuration at {0}' -f $configPath) -ErrorId 'HvtuiKind-not-found' -Category ObjectNotFound
    }
    $warnings = New-Object -TypeName System.Collections.Generic.List[string]
    Repair-HvtuiParents -Folder $folder
    if ($mode -eq 'new') {
        $destination = [string]$HvtuiArgs.destination
        $report = Get-HvtuiCompareReport -ConfigPath $configPath -Destination $destination
        foreach ($issue in @($report.Incompatibilities)) {
            $id = [int]$issue.MessageId
            if ($id -eq $HvtuiSwitchMissing) {
                Hyper-V\Disconnect-VMNetworkAdapter -VMNetworkAdapter $issue.Source
                $warnings.Add(('Network adapter {0} disconnected: {1}' -f $issue.Source.Name, $issue.Message))
            } elseif ($id -ne $HvtuiDiskNotFound) {
                Stop-HvtuiIncompatible -Message ('Cannot import the restored VM: {0} (message {1})' -f $issue.Message, $id)
            }
        }
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $report.VM)) {
            $restored = Get-HvtuiRestoredDisk -Folder $folder -Path $drive.Path
            Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path $restored
        }
        $vm = Hyper-V\Import-VM -CompatibilityReport $report
        Hyper-V\Rename-VM -VM $vm -NewName ([string]$HvtuiArgs.new_name)
        if ([bool]$HvtuiArgs.flatten) {
            Remove-HvtuiCheckpoints -VM $vm
        }
        Assert-HvtuiDisks -VM $vm
    } elseif ($mode -eq 'in_place') {
        $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
        if ($vm.State.ToString() -ne 'Off') {
            Stop-Hvtui -Message ('VM {0} is {1}: turn it off before restoring over it' -f $vm.Name, $vm.State) -ErrorId 'HvtuiKind-state' -Category InvalidOperation
        }
        # Which restored file each drive writes to, from the restored configuration.
        $report = Get-HvtuiCompareReport -ConfigPath $configPath -Destination $folder
        $tops = @{}
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $report.VM)) {
            $key = '{0}/{1}/{2}' -f $drive.ControllerType, $drive.ControllerNumber, $drive.ControllerLocation
            $tops[$key] = [System.IO.Path]::GetFileName($drive.Path)
        }
        $drives = @(Hyper-V\Get-VMHardDiskDrive -VM $vm)
        $diskFolder = [System.IO.Path]::GetDirectoryName($drives[0].Path)
        $moved = New-Object -TypeName System.Collections.Generic.List[string]
        $original = @{}
        foreach ($drive in $drives) {
            $original[$drive] = $drive.Path
        }
        try {
            foreach ($file in [System.IO.Directory]::GetFiles($folder)) {
                $name = [System.IO.Path]::GetFileName($file)
                if ($name -notlike '*.vhdx' -and $name -notlike '*.avhdx') {
                    continue
                }
                $target = [System.IO.Path]::Combine($diskFolder, $name)
                if ([System.IO.File]::Exists($target)) {
                    [System.IO.File]::Move($target, $target + '.hvtui-old')
                }
                $moved.Add($target)
                [System.IO.File]::Move($file, $target)
            }
            foreach ($drive in $drives) {
                $key = '{0}/{1}/{2}' -f $drive.ControllerType, $drive.ControllerNumber, $drive.ControllerLocation
                if (-not $tops.ContainsKey($key)) {
                    Stop-HvtuiIncompatible -Message ('The restore point has no disk for drive {0}' -f $key)
                }
                Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path ([System.IO.Path]::Combine($diskFolder, $tops[$key]))
            }
            Assert-HvtuiDisks -VM $vm
        } catch {
            # Put the old disks back: the VM is as it was before the restore.
            foreach ($drive in $drives) {
                Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path $original[$drive]
            }
            foreach ($target in $moved) {
                if ([System.IO.File]::Exists($target + '.hvtui-old')) {
                    [System.IO.File]::Delete($target)
                    [System.IO.File]::Move($target + '.hvtui-old', $target)
                }
            }
            throw
        }
        foreach ($target in $moved) {
            if ([System.IO.File]::Exists($target + '.hvtui-old')) {
                [System.IO.File]::Delete($target + '.hvtui-old')
            }
        }
    } else {
        Stop-Hvtui -Message ('Unknown restore mode {0}' -f $mode) -ErrorId 'HvtuiKind-argument' -Category InvalidArgument
    }
    [System.IO.Directory]::Delete($folder, $true)
    [ordered]@{
        ok = $true
        vm_id = $vm.Id.ToString()
        warnings = @($warnings)
    }
}
exit $exitCode
