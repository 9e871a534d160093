"""What calicoctl prints after create, apply, replace, delete and patch: Calico's lines, word for
word (calicoctl/commands/{create,apply,replace,delete,patch}.go over common.ExecuteConfigCommand).
Pure: the commands count, this words.

Calico's counting, which the lines follow: create, apply and delete count the resources that
succeeded and collect every error; replace and patch count every resource they tried and keep
the last error. Calico's own quirks are kept, so the output is the same: create and apply say
"Partial success" only when more succeeded than failed, and a failed replace still says it
replaced "the first N out of N" before the error.
"""

from __future__ import annotations

from dataclasses import dataclass

PAST = {"create": "created", "apply": "applied", "replace": "replaced", "delete": "deleted", "patch": "patched"}


@dataclass(frozen=True)
class Outcome:
    kind: str  # the resource's kind, e.g. "IPPool"
    error: str | None = None  # the error as Calico words it; None: it succeeded


@dataclass(frozen=True)
class Summary:
    out: str = ""  # for stdout
    error: str | None = None  # for stderr (exit status 1); it may span lines


def single_kind(outcomes: list[Outcome], by_name: bool) -> str:
    """The kind named in the lines: the only one in play, or "" for a file mixing kinds (resources
    named on the command line are always of one kind)."""
    kinds = {outcome.kind for outcome in outcomes}
    return next(iter(kinds)) if by_name or len(kinds) == 1 else ""


def _go_list(errors: list[str]) -> str:
    """Go's %v of a []error."""
    return "[" + " ".join(errors) + "]"


def summarize(verb: str, outcomes: list[Outcome], *, by_name: bool = False) -> Summary:
    kind = single_kind(outcomes, by_name)
    if verb in ("create", "apply"):
        return _create_or_apply(verb, kind, outcomes)
    if verb == "replace":
        return _replace(kind, outcomes)
    if verb == "delete":
        return _delete(kind, outcomes)
    if verb == "patch":
        return _patch(kind, outcomes)
    raise ValueError(f"no summary for {verb!r}")


def _resources(count: int | None, kind: str) -> str:
    """`'IPPool' resource(s)` style nouns; `count` None leaves the number out."""
    number = f"{count} " if count is not None else ""
    return f"{number}'{kind}' resource(s)" if kind else f"{number}resource(s)"


def _create_or_apply(verb: str, kind: str, outcomes: list[Outcome]) -> Summary:
    errors = [o.error for o in outcomes if o.error is not None]
    handled, total = len(outcomes) - len(errors), len(outcomes)
    if handled == 0:
        if total == 1:
            return Summary(error=f"Failed to {verb} '{kind}' resource: {_go_list(errors)}")
        which = f"any '{kind}' resources" if kind else "any resources"
        return Summary(error=f"Failed to {verb} {which}: {_go_list(errors)}")
    if not errors:
        return Summary(out=f"Successfully {PAST[verb]} {_resources(handled, kind)}\n")
    out = ""
    if handled - len(errors) > 0:
        noun = f"'{kind}' resources" if kind else "resources"
        out = f"Partial success: {PAST[verb]} the first {handled} out of {total} {noun}:\n"
    hit = "Hit error" if verb == "create" else "Hit error(s)"
    return Summary(out=out, error=f"{hit}: {_go_list(errors)}")


def _replace(kind: str, outcomes: list[Outcome]) -> Summary:
    errors = [o.error for o in outcomes if o.error is not None]
    total = len(outcomes)
    if not errors:
        return Summary(out=f"Successfully replaced {_resources(total, kind)}\n")
    noun = f"'{kind}' resources" if kind else "resources"
    return Summary(out=f"Partial success: replaced the first {total} out of {total} {noun}:\n",
                   error=f"Hit error: {errors[-1]}")


def _delete(kind: str, outcomes: list[Outcome]) -> Summary:
    errors = [o.error for o in outcomes if o.error is not None]
    handled = len(outcomes) - len(errors)
    out = f"Successfully deleted {_resources(handled, kind)}\n" if handled else ""
    if not errors:
        return Summary(out=out)
    # each error on a line of its own, the text ending in a newline (so a blank line follows)
    prefix = f"Failed to delete '{kind}' resource: " if kind else "Failed to delete resource: "
    return Summary(out=out, error="".join(f"{prefix}{error}\n" for error in errors))


def _patch(kind: str, outcomes: list[Outcome]) -> Summary:
    errors = [o.error for o in outcomes if o.error is not None]
    if errors:
        return Summary(error=f"Hit error: {errors[-1]}")
    return Summary(out=f"Successfully patched {len(outcomes)} '{kind}' resource\n")
