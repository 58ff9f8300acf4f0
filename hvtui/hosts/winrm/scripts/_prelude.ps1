$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# Helpers shared by every operation script; sent ahead of the operation's own text.
# Arguments come only from $HvtuiArgs (the JSON object the bootstrap decoded from stdin).

# Windows PowerShell 5.1 serialises arrays nested in objects as {"value": [...], "Count": n}
# because of this ETS entry; removing it affects only this process.
Remove-TypeData -TypeName System.Array -ErrorAction SilentlyContinue

function Get-HvtuiName {
    # An enum (or anything) as its name; $null stays $null (older hosts lack some properties).
    param($Value)
    if ($null -eq $Value) {
        return $null
    }
    return $Value.ToString()
}

function Get-HvtuiTime {
    param($Value)
    if ($null -eq $Value) {
        return $null
    }
    return $Value.ToUniversalTime().ToString('o')
}

function Write-HvtuiDocument {
    # Exactly one JSON document between the markers. Non-ASCII characters are escaped as \uXXXX
    # so that no console code page can garble names on the way back.
    param($Document)
    $json = ConvertTo-Json -InputObject $Document -Depth 6 -Compress
    $json = [regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
    [Console]::Out.WriteLine('<<<HVTUI-BEGIN>>>')
    [Console]::Out.WriteLine($json)
    [Console]::Out.WriteLine('<<<HVTUI-END>>>')
}

function Stop-Hvtui {
    # Fail with our own FullyQualifiedErrorId (mapped to a readable error on the client).
    param([string]$Message, [string]$ErrorId, [System.Management.Automation.ErrorCategory]$Category)
    $exception = New-Object -TypeName System.Exception -ArgumentList $Message
    $record = New-Object -TypeName System.Management.Automation.ErrorRecord -ArgumentList $exception, $ErrorId, $Category, $null
    throw $record
}

function Assert-HvtuiHyperV {
    if (-not (Get-Module -ListAvailable -Name Hyper-V)) {
        Stop-Hvtui -Message 'The Hyper-V PowerShell module is not installed on this host' -ErrorId 'HvtuiModuleMissing' -Category NotInstalled
    }
}

function Get-HvtuiVM {
    param([string]$Id)
    $vm = Hyper-V\Get-VM -Id $Id
    if ($null -eq $vm) {
        Stop-Hvtui -Message ('No virtual machine with id {0}' -f $Id) -ErrorId 'HvtuiNotFound,VM' -Category ObjectNotFound
    }
    return $vm
}

function Get-HvtuiCheckpoints {
    # Every checkpoint of a VM, including Recovery ones (not listed by default on every version).
    param($VM)
    $byId = [ordered]@{}
    foreach ($snapshot in @(Hyper-V\Get-VMSnapshot -VM $VM)) {
        $byId[$snapshot.Id.ToString()] = $snapshot
    }
    foreach ($snapshot in @(Hyper-V\Get-VMSnapshot -VM $VM -SnapshotType Recovery)) {
        $byId[$snapshot.Id.ToString()] = $snapshot
    }
    return @($byId.Values)
}

function Find-HvtuiCheckpoint {
    param($VM, [string]$Id)
    foreach ($snapshot in @(Get-HvtuiCheckpoints -VM $VM)) {
        if ($snapshot.Id.ToString() -eq $Id) {
            return $snapshot
        }
    }
    Stop-Hvtui -Message ('No checkpoint with id {0} on VM {1}' -f $Id, $VM.Name) -ErrorId 'HvtuiNotFound,Checkpoint' -Category ObjectNotFound
}

function ConvertTo-HvtuiCheckpoint {
    param($Snapshot)
    $parentId = $null
    if ($Snapshot.ParentSnapshotId) {
        $parentId = $Snapshot.ParentSnapshotId.ToString()
    }
    return [ordered]@{
        id = $Snapshot.Id.ToString()
        name = [string]$Snapshot.Name
        type = Get-HvtuiName -Value $Snapshot.SnapshotType
        created = Get-HvtuiTime -Value $Snapshot.CreationTime
        parent_id = $parentId
        is_automatic = [bool]$Snapshot.IsAutomaticCheckpoint
    }
}

function Invoke-HvtuiOperation {
    # Runs the operation, writes its document (or the failure document) and returns the exit code.
    # Anything else the body writes to the pipeline is noise; the document is its last output.
    param([scriptblock]$Body)
    try {
        Assert-HvtuiHyperV
        $output = @(& $Body)
        Write-HvtuiDocument -Document $output[-1]
        return 0
    } catch {
        $failure = [ordered]@{
            ok = $false
            error = [string]$_.Exception.Message
            fqid = [string]$_.FullyQualifiedErrorId
        }
        if ($failure.fqid -match '^HvtuiKind-([a-z-]+)') {
            $failure['kind'] = $Matches[1]  # a kind the caller acts on (Stop-HvtuiKind in _cim.ps1)
        }
        Write-HvtuiDocument -Document $failure
        return 1
    }
}
