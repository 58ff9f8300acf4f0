$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: backup.end
# Arguments: vm_id, checkpoint_id, outcome (success | failed), retire (reference point ids).
# Idempotent: a checkpoint already gone answers already_gone. Helpers come from _prelude.ps1 and _cim.ps1.

$exitCode = Invoke-HvtuiOperation -Body {
    $outcome = [string]$HvtuiArgs.outcome
    if (@('success', 'failed') -notcontains $outcome) {
        Stop-HvtuiKind -Kind 'argument' -Message ('outcome must be success or failed, not {0}' -f $outcome)
    }
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $cimVM = Get-HvtuiCimVM -Id $vm.Id.ToString()
    $answer = [ordered]@{ ok = $true }
    $snapshot = $null
    $wanted = ConvertTo-HvtuiGuid -Id ([string]$HvtuiArgs.checkpoint_id) -What 'checkpoint_id'
    foreach ($candidate in @(Get-HvtuiCheckpoints -VM $vm)) {
        if ($candidate.Id.ToString() -eq $wanted) {
            $snapshot = $candidate
        }
    }
    if ($null -eq $snapshot) {
        $answer['already_gone'] = $true
    } elseif ($outcome -eq 'success') {
        $before = @{}
        foreach ($point in @(Get-HvtuiReferencePoints -CimVM $cimVM)) {
            $before[$point.id] = $true
        }
        $service = Get-HvtuiService -ClassName Msvm_VirtualSystemReferencePointService
        $cimSnapshot = Get-HvtuiCimSnapshot -Id $wanted
        $result = Invoke-CimMethod -InputObject $service -MethodName ConvertToReferencePoint -Arguments @{ AffectedSnapshot = $cimSnapshot }
        $null = Wait-HvtuiJob -Result $result -What 'ConvertToReferencePoint'
        foreach ($point in @(Get-HvtuiReferencePoints -CimVM $cimVM)) {
            if (-not $before.ContainsKey($point.id)) {
                $answer['reference_point_id'] = $point.id
                $answer['rct'] = $point.rct
            }
        }
    } else {
        Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -Confirm:$false
        $answer['removed'] = $true
    }
    $retired = @()
    $retire = @($HvtuiArgs.retire | Where-Object { $_ })
    if ($retire.Count -gt 0) {
        $service = Get-HvtuiService -ClassName Msvm_VirtualSystemReferencePointService
        foreach ($point in @(Get-CimAssociatedInstance -InputObject $cimVM -ResultClassName Msvm_VirtualSystemReferencePoint)) {
            if ($retire -contains [string]$point.InstanceID) {
                $result = Invoke-CimMethod -InputObject $service -MethodName DestroyReferencePoint -Arguments @{ AffectedReferencePoint = $point }
                $null = Wait-HvtuiJob -Result $result -What 'DestroyReferencePoint'
                $retired += [string]$point.InstanceID
            }
        }
    }
    $answer['retired'] = $retired
    $answer
}
exit $exitCode
