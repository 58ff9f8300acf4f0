"""Off-site copies kept: a VM backed up into a repository that names ``copy_to:`` whose newest
restore point has no copy in a copy_to target for longer than ``policy.no_offsite_copy``."""

from __future__ import annotations

from hvtui.model import Severity
from hvtui.policy.context import VMContext, VMRule
from hvtui.policy.text import age_seconds, age_text

NO_OFFSITE_COPY = "no-offsite-copy"


def no_offsite_copy(ctx: VMContext) -> None:
    state = ctx.offsite(ctx.vm) if ctx.offsite is not None else None
    if state is None:
        return
    newest, missing_in = state
    if not missing_in:
        return
    age = age_seconds(ctx.facts.now, newest)
    if age < ctx.t.no_offsite_copy_warn:
        return
    severity = Severity.CRIT if age >= ctx.t.no_offsite_copy_crit else Severity.WARN
    targets = ", ".join(missing_in)
    ctx.add(
        severity,
        NO_OFFSITE_COPY,
        f"newest restore point ({age_text(age)} old) has no copy in {targets} "
        f"(warn after {age_text(ctx.t.no_offsite_copy_warn)}, crit after {age_text(ctx.t.no_offsite_copy_crit)})",
        f"Copy it: `hvtui copy --to {missing_in[0]} {ctx.vm.name} --from <its repository>`; see why copies fail in :jobs",
        age=age,
    )


RULES = (VMRule((NO_OFFSITE_COPY,), no_offsite_copy),)
