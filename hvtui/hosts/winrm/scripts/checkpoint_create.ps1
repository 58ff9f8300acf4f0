$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: checkpoint.create
# Arguments: vm_id, name (null: Hyper-V's default name), checkpoint_type (Standard, Production, Recovery),
# expected_type (the VM's checkpoint type as the client read it just before; null: not read).
# Helpers come from _prelude.ps1.

function New-HvtuiRecoveryCheckpoint {
    # A Recovery (backup) checkpoint exists only through WMI, as backup software creates it
    # (Msvm_VirtualSystemSnapshotService.CreateSnapshot, SnapshotType 32768 = recovery).
    param($VM)
    $namespace = 'root\virtualization\v2'
    $service = Get-WmiObject -Namespace $namespace -Class Msvm_VirtualSystemSnapshotService
    $system = Get-WmiObject -Namespace $namespace -Class Msvm_ComputerSystem -Filter ("Name='{0}'" -f $VM.Id.ToString())
    $settingClass = [wmiclass]('\\.\{0}:Msvm_VirtualSystemSnapshotSettingData' -f $namespace)
    $setting = $settingClass.CreateInstance()
    $setting.ConsistencyLevel = 1
    $setting.IgnoreNonSnapshottableDisks = $true
    $result = $service.CreateSnapshot($system, $setting.GetText(2), 32768)
    if ($result.ReturnValue -eq 4096) {
        $job = [wmi]$result.Job
        while ($job.JobState -eq 3 -or $job.JobState -eq 4) {
            Start-Sleep -Milliseconds 250
            $job = [wmi]$result.Job
        }
        if ($job.JobState -ne 7) {
            Stop-Hvtui -Message ('Creating the recovery checkpoint failed: {0}' -f $job.ErrorDescription) -ErrorId 'HvtuiWmiJobFailed' -Category OperationStopped
        }
    } elseif ($result.ReturnValue -ne 0) {
        Stop-Hvtui -Message ('Creating the recovery checkpoint failed with WMI code {0}' -f $result.ReturnValue) -ErrorId 'HvtuiWmiFailed' -Category OperationStopped
    }
}

$exitCode = Invoke-HvtuiOperation -Body {
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $wanted = [string]$HvtuiArgs.checkpoint_type
    $name = $HvtuiArgs.name
    $before = @{}
    foreach ($snapshot in @(Get-HvtuiCheckpoints -VM $vm)) {
        $before[$snapshot.Id.ToString()] = $true
    }

    if ($wanted -eq 'Recovery') {
        New-HvtuiRecoveryCheckpoint -VM $vm
    } elseif ($wanted -eq 'Standard' -or $wanted -eq 'Production') {
        $current = Get-HvtuiName -Value $vm.CheckpointType
        if ($current -eq 'Disabled') {
            Stop-Hvtui -Message ('Checkpoints are disabled for VM {0}' -f $vm.Name) -ErrorId 'HvtuiCheckpointsDisabled' -Category InvalidOperation
        }
        # The client puts the type back itself if this call is cut off after the switch below
        # (a terminated shell skips finally): it must know the type this script switches from.
        $expected = $HvtuiArgs.expected_type
        if ($expected -and $current -ne [string]$expected) {
            Stop-Hvtui -Message ('The checkpoint type of VM {0} changed to {1} meanwhile (it was {2}); try again' -f $vm.Name, $current, $expected) -ErrorId 'HvtuiCheckpointTypeChanged' -Category InvalidOperation
        }
        # Checkpoint-VM takes the type from the VM's setting: switch it for this one call
        # (Production may fall back to standard where the guest cannot quiesce, as in Hyper-V Manager).
        $switchType = $null -ne $current -and -not ($current -eq $wanted -or ($wanted -eq 'Production' -and $current -eq 'ProductionOnly'))
        if ($switchType) {
            Hyper-V\Set-VM -VM $vm -CheckpointType $wanted
        }
        try {
            if ($name) {
                Hyper-V\Checkpoint-VM -VM $vm -SnapshotName ([string]$name) | Out-Null
            } else {
                Hyper-V\Checkpoint-VM -VM $vm | Out-Null
            }
        } finally {
            if ($switchType) {
                Hyper-V\Set-VM -VM $vm -CheckpointType $current
            }
        }
    } else {
        Stop-Hvtui -Message ('Unknown checkpoint type {0} (expected Standard, Production or Recovery)' -f $wanted) -ErrorId 'HvtuiBadArgument' -Category InvalidArgument
    }

    $created = $null
    foreach ($snapshot in @(Get-HvtuiCheckpoints -VM $vm)) {
        if (-not $before.ContainsKey($snapshot.Id.ToString())) {
            $created = $snapshot
        }
    }
    if ($null -eq $created) {
        Stop-Hvtui -Message ('The new checkpoint of VM {0} did not appear' -f $vm.Name) -ErrorId 'HvtuiCheckpointMissing' -Category ObjectNotFound
    }
    if ($name -and $wanted -eq 'Recovery') {
        Hyper-V\Rename-VMSnapshot -VMSnapshot $created -NewName ([string]$name)
        $created = Find-HvtuiCheckpoint -VM $vm -Id $created.Id.ToString()
    }
    [ordered]@{
        ok = $true
        checkpoint = ConvertTo-HvtuiCheckpoint -Snapshot $created
    }
}
exit $exitCode
