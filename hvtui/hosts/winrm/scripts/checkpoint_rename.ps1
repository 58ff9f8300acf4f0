$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: checkpoint.rename
# Arguments: vm_id, checkpoint_id, new_name. Helpers come from _prelude.ps1.

$exitCode = Invoke-HvtuiOperation -Body {
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $snapshot = Find-HvtuiCheckpoint -VM $vm -Id $HvtuiArgs.checkpoint_id
    Hyper-V\Rename-VMSnapshot -VMSnapshot $snapshot -NewName ([string]$HvtuiArgs.new_name)
    $renamed = Find-HvtuiCheckpoint -VM $vm -Id $HvtuiArgs.checkpoint_id
    [ordered]@{
        ok = $true
        checkpoint = ConvertTo-HvtuiCheckpoint -Snapshot $renamed
    }
}
exit $exitCode
