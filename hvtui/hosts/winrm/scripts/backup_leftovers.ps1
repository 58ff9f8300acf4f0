$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: backup.leftovers
# Arguments: none. hvtui's Recovery checkpoints (named "hvtui backup ...") on every VM, and every
# reference point. Helpers come from _prelude.ps1 and _cim.ps1.

$exitCode = Invoke-HvtuiOperation -Body {
    $checkpoints = @()
    $points = @()
    foreach ($vm in @(Hyper-V\Get-VM)) {
        foreach ($snapshot in @(Hyper-V\Get-VMSnapshot -VM $vm -SnapshotType Recovery)) {
            if (([string]$snapshot.Name).StartsWith($HvtuiLabelPrefix)) {
                $checkpoints += [ordered]@{
                    vm_id = $vm.Id.ToString()
                    vm_name = [string]$vm.Name
                    checkpoint_id = $snapshot.Id.ToString()
                    name = [string]$snapshot.Name
                    created = Get-HvtuiTime -Value $snapshot.CreationTime
                }
            }
        }
        foreach ($point in @(Get-HvtuiReferencePoints -CimVM (Get-HvtuiCimVM -Id $vm.Id.ToString()))) {
            $points += [ordered]@{
                vm_id = $vm.Id.ToString()
                id = $point.id
                created = $point.created
            }
        }
    }
    [ordered]@{
        ok = $true
        checkpoints = $checkpoints
        reference_points = $points
    }
}
exit $exitCode
