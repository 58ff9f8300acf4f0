$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: checkpoint.type
# Arguments: vm_id, restore_from, restore_to, wait_seconds. Reads the VM's checkpoint type
# setting. With restore_to set, it first puts the type back to restore_to, but only while the
# type is still restore_from (what an abandoned checkpoint.create switched it to), so that a
# change someone made since is never overwritten. Helpers come from _prelude.ps1.

$exitCode = Invoke-HvtuiOperation -Body {
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $current = Get-HvtuiName -Value $vm.CheckpointType
    $restoreTo = $HvtuiArgs.restore_to
    $restored = $false
    if ($restoreTo -and $null -ne $current -and $current -eq [string]$HvtuiArgs.restore_from) {
        # The abandoned create's checkpoint may still be in progress; Hyper-V can refuse
        # Set-VM until it is done, so retry until wait_seconds have passed.
        $deadline = (Get-Date).AddSeconds([double]$HvtuiArgs.wait_seconds)
        while (-not $restored) {
            try {
                Hyper-V\Set-VM -VM $vm -CheckpointType ([string]$restoreTo)
                $restored = $true
            } catch {
                if ((Get-Date) -ge $deadline) {
                    throw
                }
                Start-Sleep -Seconds 2
                $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
            }
        }
        $current = Get-HvtuiName -Value (Get-HvtuiVM -Id $HvtuiArgs.vm_id).CheckpointType
    }
    [ordered]@{
        ok = $true
        checkpoint_type = $current
        restored = $restored
    }
}
exit $exitCode
