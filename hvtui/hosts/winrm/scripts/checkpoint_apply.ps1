$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: checkpoint.apply
# Arguments: vm_id, checkpoint_id. Helpers come from _prelude.ps1.

$exitCode = Invoke-HvtuiOperation -Body {
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $snapshot = Find-HvtuiCheckpoint -VM $vm -Id $HvtuiArgs.checkpoint_id
    Hyper-V\Restore-VMSnapshot -VMSnapshot $snapshot -Confirm:$false
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    [ordered]@{
        ok = $true
        vm_state = Get-HvtuiName -Value $vm.State
    }
}
exit $exitCode
