$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# Helpers of the backup operations: Hyper-V's WMI provider through CIM (root\virtualization\v2),
# available in Windows PowerShell 5.1. Sent after _prelude.ps1, before the operation's template.

$HvtuiNamespace = 'root\virtualization\v2'
$HvtuiLabelPrefix = 'hvtui backup '

function Stop-HvtuiKind {
    # A failure whose kind the client acts on: the prelude copies it into the document's "kind".
    param([string]$Kind, [string]$Message)
    Stop-Hvtui -Message $Message -ErrorId ('HvtuiKind-{0}' -f $Kind) -Category InvalidOperation
}

function ConvertTo-HvtuiGuid {
    # Ids go into WQL filters only after parsing as a GUID: no text of the caller reaches WQL.
    param([string]$Id, [string]$What)
    $guid = [guid]::Empty
    if (-not [guid]::TryParse($Id, [ref]$guid)) {
        Stop-HvtuiKind -Kind 'argument' -Message ('{0} is not an id: {1}' -f $What, $Id)
    }
    return $guid.ToString()
}

function Get-HvtuiCimVM {
    param([string]$Id)
    $guid = ConvertTo-HvtuiGuid -Id $Id -What 'vm_id'
    $vm = Get-CimInstance -Namespace $HvtuiNamespace -ClassName Msvm_ComputerSystem -Filter ("Name='{0}'" -f $guid)
    if ($null -eq $vm) {
        Stop-HvtuiKind -Kind 'not-found' -Message ('No virtual machine with id {0}' -f $Id)
    }
    return $vm
}

function Get-HvtuiService {
    param([string]$ClassName)
    return Get-CimInstance -Namespace $HvtuiNamespace -ClassName $ClassName
}

function Wait-HvtuiJob {
    # A method answers 0 (done) or 4096 (a Msvm_ConcreteJob runs): wait for the job to finish and
    # fail with its ErrorDescription. Returns the finished job (or $null when there was none).
    param($Result, [string]$What)
    if ($Result.ReturnValue -eq 0) {
        return $null
    }
    if ($Result.ReturnValue -ne 4096) {
        Stop-Hvtui -Message ('{0} failed with return value {1}' -f $What, $Result.ReturnValue) -ErrorId 'HvtuiCimFailed' -Category InvalidResult
    }
    $job = $Result.Job
    while ($true) {
        $job = Get-CimInstance -InputObject $job
        if ($job.JobState -eq 7) {
            return $job
        }
        if (@(8, 9, 10) -contains [int]$job.JobState) {
            Stop-Hvtui -Message ('{0} failed: {1}' -f $What, $job.ErrorDescription) -ErrorId 'HvtuiCimJobFailed' -Category InvalidResult
        }
        Start-Sleep -Milliseconds 500
    }
}

function Get-HvtuiCimSnapshot {
    # The checkpoint's settings object, or $null when it no longer exists.
    param([string]$Id)
    $guid = ConvertTo-HvtuiGuid -Id $Id -What 'checkpoint_id'
    return Get-CimInstance -Namespace $HvtuiNamespace -ClassName Msvm_VirtualSystemSettingData -Filter ("InstanceID='Microsoft:{0}'" -f $guid)
}

function Get-HvtuiReferencePoints {
    # The VM's reference points: id, created, and the RCT id of each disk by its path (the
    # identifiers come in the order of the point's disks).
    param($CimVM)
    $rows = @()
    foreach ($point in @(Get-CimAssociatedInstance -InputObject $CimVM -ResultClassName Msvm_VirtualSystemReferencePoint)) {
        $rct = [ordered]@{}
        $disks = @(Get-CimAssociatedInstance -InputObject $point -ResultClassName Msvm_StorageAllocationSettingData)
        $ids = @($point.ResilientChangeTrackingIdentifiers)
        for ($i = 0; $i -lt $ids.Count -and $i -lt $disks.Count; $i++) {
            $rct[[string]@($disks[$i].HostResource)[0]] = [string]$ids[$i]
        }
        $rows += [ordered]@{
            id = [string]$point.InstanceID
            created = Get-HvtuiTime -Value $point.CreationTime
            rct = $rct
        }
    }
    return ,$rows
}
