"""Every PowerShell text hvtui sends to a host, and every snippet docs/ tells an admin to paste, is
read by a real PowerShell grammar (tests/powershell_grammar.py): no syntax error, and none of the
PowerShell 7 forms that Windows PowerShell 5.1 refuses.  First, proof that the checker sees errors."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import pytest
from powershell_grammar import (
    FencedBlock,
    powershell7_only_syntax,
    powershell_blocks,
    quotes_and_dashes_the_grammar_misses,
    syntax_problems,
)

from hvtui.hosts.winrm.encoding import bootstrap_command
from hvtui.hosts.winrm.operations import SCRIPTS, full_script

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
DOC_BLOCKS = [block for path in DOCS for block in powershell_blocks(path)]

# A 5.1 script using the forms the templates and docs rely on: it must parse clean, or the
# checker would be useless (and the error tests below would prove nothing).
VALID_SCRIPT = """[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Name,
    [int]$Count = 2
)
$ErrorActionPreference = 'Stop'
$splat = @{ Name = $Name; ErrorAction = 'Stop' }
try {
    $vm = Hyper-V\\Get-VM @splat
    $text = @"
VM $($vm.Name) has $($vm.ProcessorCount) CPUs
"@
    $row = [ordered]@{ id = $vm.Id.ToString(); when = (Get-Date).ToUniversalTime().ToString('o') }
    Get-VM | ? { $_.State -eq 'Off' } | % { $_.Name } 2>&1 | Out-Null
    Remove-VMSnapshot -VMSnapshot $s -Confirm:$false
    New-Item -Path WSMan:\\localhost\\Listener -Transport HTTPS `
        -Address * -Force
} catch {
    Write-Error "failed: $($_.Exception.Message)"
} finally {
    $x = ${env:ProgramFiles(x86)}
}
"""


def described(problems: list) -> list[str]:
    return [str(problem) for problem in problems]


def test_a_valid_51_script_has_no_problem() -> None:
    assert syntax_problems(VALID_SCRIPT) == []
    assert powershell7_only_syntax(VALID_SCRIPT) == []


def test_an_unclosed_brace_is_reported_where_the_grammar_runs_out_of_text() -> None:
    script = "function Get-Thing {\n    $x = 1\n    if ($x) {\n        'yes'\n}\n$y = 2\n"
    assert described(syntax_problems(script)) == ["line 6, column 7: missing '}'"]


def test_a_stray_closing_brace_is_reported_on_its_line() -> None:
    script = "$x = 1\nif ($x) {\n    'one'\n}\n}\n$y = 2\n"
    assert described(syntax_problems(script)) == ["line 5, column 1: }"]


def test_a_param_block_missing_a_comma_is_reported_on_the_parameter_before_it() -> None:
    script = (
        "function Invoke-It {\n    param(\n        [Parameter(Mandatory = $true)][string]$Name\n"
        "        [int]$Count\n    )\n    $Name\n}\n"
    )
    assert described(syntax_problems(script)) == ["line 3, column 9: [Parameter(Mandatory = $true)][string]$Name"]


def test_an_unclosed_param_block_and_a_trailing_comma_are_reported() -> None:
    unclosed = "function f {\n  param(\n    [string]$a,\n    [int]$b\n}\n"
    assert described(syntax_problems(unclosed)) == ["line 2, column 3: param("]
    trailing_comma = "function Invoke-It {\n    param([string]$Name,)\n    $Name\n}\n"
    assert described(syntax_problems(trailing_comma)) == ["line 2, column 24: ,"]


def test_an_unclosed_hashtable_is_reported() -> None:
    problems = syntax_problems("$a = @{\n  b = 1\n\n$c = 2\n")
    assert problems and problems[0].line == 1 and problems[0].snippet == "$a = @{"


# --- the templates, as they go on the wire ----------------------------------------------------------


# Each operation's script as sent (prelude + includes + template) is parsed by
# test_winrm_templates.py::test_the_script_sent_for_each_operation_parses, through the same checker.


def sent_bootstrap() -> str:
    """The bootstrap decoded back from the command line hvtui sends (-EncodedCommand, UTF-16LE)."""
    encoded = bootstrap_command().rsplit(" ", 1)[1]
    return base64.b64decode(encoded).decode("utf-16-le")


def test_the_bootstrap_as_sent_parses_and_is_51_syntax() -> None:
    text = sent_bootstrap()
    assert "[ScriptBlock]::Create" in text  # the real bootstrap, not an empty decode
    assert described(syntax_problems(text)) == []
    assert described(powershell7_only_syntax(text)) == []


@pytest.mark.parametrize("op", sorted(SCRIPTS))
def test_the_script_sent_for_each_operation_is_51_syntax(op: str) -> None:
    # full_script is what goes over standard input: the prelude, its includes, then the template.
    assert described(powershell7_only_syntax(full_script(op))) == []


# --- the snippets in docs/ ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GrammarMisread:
    """Valid PowerShell 5.1 the grammar misreads, and an equivalent form it reads, with the reason."""

    fragment: str
    same_as: str
    reason: str


_BAREWORD_LIST = (
    "tree-sitter-powershell 0.26.4 reads an unquoted comma list as a command argument as an error "
    "(`Select-Object Name, State`); PowerShell passes barewords as strings, so the quoted list is the same command"
)
GRAMMAR_MISREADS = [
    GrammarMisread("Format-Table Name, Value", "Format-Table 'Name', 'Value'", _BAREWORD_LIST),
    GrammarMisread(
        "Select-Object EncryptData, RejectUnencryptedAccess, RequireSecuritySignature",
        "Select-Object 'EncryptData', 'RejectUnencryptedAccess', 'RequireSecuritySignature'",
        _BAREWORD_LIST,
    ),
]


def without_misreads(text: str) -> str:
    for misread in GRAMMAR_MISREADS:
        text = text.replace(misread.fragment, misread.same_as)
    return text


def test_there_are_snippets_to_check() -> None:
    assert len([b for b in DOC_BLOCKS if b.path.name == "host-setup.md"]) >= 10


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=lambda b: f"{b.path.name}:{b.line}")
def test_every_powershell_snippet_in_the_docs_parses(block: FencedBlock) -> None:
    text = without_misreads(block.text)
    assert [block.place(p) for p in syntax_problems(text)] == []


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=lambda b: f"{b.path.name}:{b.line}")
def test_every_powershell_snippet_in_the_docs_is_51_syntax(block: FencedBlock) -> None:
    # Admins paste these into Windows PowerShell 5.1 on the host.
    assert [block.place(p) for p in powershell7_only_syntax(block.text)] == []


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=lambda b: f"{b.path.name}:{b.line}")
def test_no_snippet_in_the_docs_has_a_quote_or_dash_the_grammar_cannot_see(block: FencedBlock) -> None:
    # (The templates are ASCII: test_winrm_templates.py.)
    assert [block.place(p) for p in quotes_and_dashes_the_grammar_misses(block.text)] == []


def test_the_quotes_and_dashes_powershell_reads_are_found() -> None:
    # The grammar reads this as one clean command; PowerShell ends the string at the right quote
    # and runs Remove-VM.
    sample = "$ok = 1\nGet-VM -Name 'o\u2019; Remove-VM x; \u2019' \u2013Verbose \u201cx\u201d\n"
    assert syntax_problems(sample) == []
    assert described(quotes_and_dashes_the_grammar_misses(sample)) == [
        "line 2, column 16: U+2019 right single quotation mark",
        "line 2, column 32: U+2019 right single quotation mark",
        "line 2, column 35: U+2013 en dash",
        "line 2, column 44: U+201C left double quotation mark",
        "line 2, column 46: U+201D right double quotation mark",
    ]
    assert quotes_and_dashes_the_grammar_misses(VALID_SCRIPT) == []


@pytest.mark.parametrize("misread", GRAMMAR_MISREADS, ids=lambda m: m.fragment)
def test_each_allowed_misread_is_still_needed_and_changes_nothing_else(misread: GrammarMisread) -> None:
    # Still in the docs, still misread (a grammar that learns the form must shrink the list),
    # and the stand-in reads clean.
    assert any(misread.fragment in block.text for block in DOC_BLOCKS)
    assert syntax_problems(misread.fragment + "\n") != []
    assert syntax_problems(misread.same_as + "\n") == []
    assert misread.same_as.replace("'", "") == misread.fragment


# --- PowerShell 7 forms that 5.1 refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("$a = 1\n$b = $a ?? 'none'\n", "line 2, column 9: null-coalescing operator '??'"),
        ("$a = $null\n$a ??= 1\n", "line 2, column 4: null-coalescing assignment '??='"),
        ("$vm = $null\n$name = $vm?.Name\n", "line 2, column 12: null-conditional operator '?.'"),
        ("$name = ${vm}?.Name\n", "line 1, column 14: null-conditional operator '?.'"),
        ("$first = ${disks}?[0]\n", "line 1, column 18: null-conditional operator '?['"),
        ("$ok = $true\n$text = $ok ? 'yes' : 'no'\n", "line 2, column 13: ternary operator '? :'"),
        ("if ($x) {\n    $y = ($x ? 1 : 2)\n}\n", "line 2, column 14: ternary operator '? :'"),
        ("Get-VM && Write-Output 'listed'\n", "line 1, column 8: pipeline chain operator '&&'"),
        ("$x = 1\nGet-VM || throw 'no VMs'\n", "line 2, column 8: pipeline chain operator '||'"),
        ("$t | ConvertFrom-Json -AsHashtable\n", "line 1, column 23: PowerShell 7 parameter ConvertFrom-Json -AsHashtable"),
        (
            "$rows | Microsoft.PowerShell.Utility\\ConvertTo-Json -AsArray -Compress\n",
            "line 1, column 53: PowerShell 7 parameter Microsoft.PowerShell.Utility\\ConvertTo-Json -AsArray",
        ),
        (
            "Get-VM | ForEach-Object -Parallel { $_.Name }\n",
            "line 1, column 25: PowerShell 7 parameter ForEach-Object -Parallel",
        ),
    ],
)
def test_each_powershell7_form_is_found_on_its_line(sample: str, expected: str) -> None:
    assert described(powershell7_only_syntax(sample)) == [expected]


def test_an_alias_and_every_ps7_parameter_of_a_command_are_found() -> None:
    sample = "Get-VM |\n    % -Parallel { $_.Name } -ThrottleLimit 4\n"
    assert described(powershell7_only_syntax(sample)) == [
        "line 2, column 7: PowerShell 7 parameter % -Parallel",
        "line 2, column 29: PowerShell 7 parameter % -ThrottleLimit",
    ]


def test_the_same_characters_in_strings_comments_and_the_where_alias_are_not_powershell7() -> None:
    sample = (
        "$x = '$a ?? b && c || d ? e : f'  # ?? && || ?. ? :\n"
        '$y = "$($vm.Name) ?? && ||"\n'
        "Get-VM | ? { $_.State -eq 'Off' } | % { $_.Name }\n"
        "$json | ConvertFrom-Json | ConvertTo-Json -Depth 4 -Compress\n"
    )
    assert syntax_problems(sample) == []
    assert powershell7_only_syntax(sample) == []
