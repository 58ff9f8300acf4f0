# hvtui bootstrap, sent as -EncodedCommand. Standard input carries, as UTF-8:
#   <script text> NUL NUL NUL NUL <arguments as one JSON object>
# Nothing a user typed is ever part of this text or of the script text.
$ErrorActionPreference = 'Stop'
&chcp.com 65001 > $null
$hvtuiPayload = [string]::Join("`n", @($input))
$hvtuiParts = $hvtuiPayload.Split([string[]]@("`0`0`0`0"), 2, [StringSplitOptions]::None)
if ($hvtuiParts.Length -ne 2) {
    [Console]::Out.WriteLine('<<<HVTUI-BEGIN>>>')
    [Console]::Out.WriteLine('{"ok":false,"error":"hvtui bootstrap: no separator on standard input","fqid":"HvtuiBootstrap"}')
    [Console]::Out.WriteLine('<<<HVTUI-END>>>')
    exit 1
}
$HvtuiArgs = ConvertFrom-Json -InputObject $hvtuiParts[1]
& ([ScriptBlock]::Create($hvtuiParts[0]))
exit $LASTEXITCODE
