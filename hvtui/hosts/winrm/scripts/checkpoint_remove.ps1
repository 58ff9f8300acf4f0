$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: checkpoint.remove
# Arguments: vm_id, checkpoint_id, subtree (true: with every descendant, like Hyper-V Manager's
# "Delete Checkpoint Subtree"), wait_seconds (how long to wait for the merge to finish).
# Helpers come from _prelude.ps1.

function Test-HvtuiMerging {
    param($VM)
    $states = @(foreach ($status in @($VM.OperationalStatus)) { Get-HvtuiName -Value $status })
    return $states -contains 'MergingDisks'
}

$exitCode = Invoke-HvtuiOperation -Body {
    $vm = Get-HvtuiVM -Id $HvtuiArgs.vm_id
    $all = @(Get-HvtuiCheckpoints -VM $vm)
    $snapshot = Find-HvtuiCheckpoint -VM $vm -Id $HvtuiArgs.checkpoint_id
    $subtree = [bool]$HvtuiArgs.subtree

    $removed = New-Object -TypeName System.Collections.Generic.List[string]
    $removed.Add($snapshot.Id.ToString())
    if ($subtree) {
        $index = 0
        while ($index -lt $removed.Count) {
            foreach ($candidate in $all) {
                if ($candidate.ParentSnapshotId -and $candidate.ParentSnapshotId.ToString() -eq $removed[$index]) {
                    $removed.Add($candidate.Id.ToString())
                }
            }
            $index += 1
        }
        Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -IncludeAllChildSnapshots -Confirm:$false
    } else {
        Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -Confirm:$false
    }

    # The merge runs in the background; wait for it so the caller sees the final chain.
    $deadline = (Get-Date).AddSeconds([double]$HvtuiArgs.wait_seconds)
    $merging = Test-HvtuiMerging -VM (Get-HvtuiVM -Id $HvtuiArgs.vm_id)
    while ($merging -and (Get-Date) -lt $deadline) {
        Start-Sleep -Seconds 1
        $merging = Test-HvtuiMerging -VM (Get-HvtuiVM -Id $HvtuiArgs.vm_id)
    }
    [ordered]@{
        ok = $true
        removed = @($removed)
        merge_pending = [bool]$merging
    }
}
exit $exitCode
