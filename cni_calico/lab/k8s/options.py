"""Query parameters and DeleteOptions, parsed and checked as the API server does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, Cause, bad_request
from .resources import ResourceType
from .selectors import FieldSelector, LabelSelector, SelectorError, parse_field_selector, parse_label_selector

Query = dict[str, list[str]]
TRUE = ("1", "t", "T", "true", "TRUE", "True")
FALSE = ("0", "f", "F", "false", "FALSE", "False")


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bool(query: Query, name: str) -> bool | None:
    value = _one(query, name)
    if value is None or value == "":
        return None
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise bad_request(f'invalid value for {name}: strconv.ParseBool: parsing "{value}": invalid syntax')


def _int(query: Query, name: str) -> int | None:
    value = _one(query, name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'invalid value for {name}: strconv.ParseInt: parsing "{value}": invalid syntax') from None


def _options_invalid(causes: list[Cause]) -> ApiError:
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    return ApiError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {summary}',
                    {"group": "meta.k8s.io", "kind": "ListOptions", "causes": [c.as_dict() for c in causes]})


def parse_resource_version(text: str | None) -> int | None:
    """None for "unset"; otherwise the version as an integer (a non-integer is a 400, as for etcd)."""
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise bad_request(f'invalid resource version "{text}": strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)


@dataclass
class ListOptions:
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    resource_version: int | None = None  # None: unset (the most recent)
    resource_version_raw: str = ""
    resource_version_match: str = ""  # "", NotOlderThan, Exact
    limit: int = 0
    continue_token: str = ""
    watch: bool = False
    allow_bookmarks: bool = False
    timeout_seconds: int | None = None
    send_initial_events: bool | None = None


def parse_list_options(rt: ResourceType, query: Query, *, watch_path: bool = False) -> ListOptions:
    opts = ListOptions()
    try:
        opts.labels = parse_label_selector(_one(query, "labelSelector") or "")
        opts.fields = parse_field_selector(_one(query, "fieldSelector") or "", rt.selectable_fields)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
    opts.resource_version_raw = _one(query, "resourceVersion") or ""
    opts.resource_version = parse_resource_version(opts.resource_version_raw)
    opts.resource_version_match = _one(query, "resourceVersionMatch") or ""
    opts.limit = _int(query, "limit") or 0
    opts.continue_token = _one(query, "continue") or ""
    opts.watch = watch_path or bool(_bool(query, "watch"))
    opts.allow_bookmarks = bool(_bool(query, "allowWatchBookmarks"))
    opts.timeout_seconds = _int(query, "timeoutSeconds")
    opts.send_initial_events = _bool(query, "sendInitialEvents")
    _check(opts)
    return opts


def _check(opts: ListOptions) -> None:
    match, raw = opts.resource_version_match, opts.resource_version_raw
    if match not in ("", "NotOlderThan", "Exact"):
        raise _options_invalid([Cause("FieldValueNotSupported", f'Unsupported value: "{match}": supported values: '
                                      f'"Exact", "NotOlderThan", ""', "resourceVersionMatch")])
    if opts.watch:
        if opts.send_initial_events is not None:
            if opts.send_initial_events and not opts.allow_bookmarks:
                raise _options_invalid([Cause("FieldValueForbidden", "Forbidden: sendInitialEvents requires setting "
                                              "allowWatchBookmarks=true", "allowWatchBookmarks")])
            if match != "NotOlderThan":
                raise _options_invalid([Cause("FieldValueForbidden", "Forbidden: sendInitialEvents requires setting "
                                              "resourceVersionMatch to NotOlderThan", "resourceVersionMatch")])
        elif match:
            raise _options_invalid([Cause("FieldValueForbidden", "Forbidden: resourceVersionMatch is forbidden for "
                                          "watch unless sendInitialEvents is provided", "resourceVersionMatch")])
        if opts.timeout_seconds is not None and opts.timeout_seconds < 0:
            raise bad_request(f"invalid timeoutSeconds: {opts.timeout_seconds}")
        return
    if match and raw == "":
        raise _options_invalid([Cause("FieldValueForbidden", "Forbidden: resourceVersionMatch is forbidden unless "
                                      "resourceVersion is provided", "resourceVersionMatch")])
    if match == "Exact" and raw == "0":
        raise _options_invalid([Cause("FieldValueForbidden", 'Forbidden: resourceVersionMatch "exact" is forbidden '
                                      'for resourceVersion "0"', "resourceVersionMatch")])
    if opts.continue_token and match:
        raise _options_invalid([Cause("FieldValueForbidden", "Forbidden: resourceVersionMatch is forbidden when "
                                      "continue is provided", "resourceVersionMatch")])
    if opts.continue_token and raw not in ("", "0"):
        raise bad_request("specifying resource version is not allowed when using continue")
    opts.limit = max(opts.limit, 0)


@dataclass
class DeleteOptions:
    precondition_rv: str | None = None
    precondition_uid: str | None = None
    dry_run: bool = False
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None


def parse_dry_run(values: Any) -> bool:
    if values in (None, [], ""):
        return False
    items = values if isinstance(values, list) else [values]
    for item in items:
        if item != "All":
            raise bad_request(f'dryRun: Unsupported value: "{item}": supported values: "All"')
    return True


def parse_delete_options(query: Query, body: Any) -> DeleteOptions:
    opts = DeleteOptions()
    if body is not None:
        if not isinstance(body, dict):
            raise bad_request("the body of a DELETE must be a DeleteOptions object")
        if body.get("kind", "DeleteOptions") != "DeleteOptions":
            raise bad_request(f'the kind in the body ({body.get("kind")}) must be DeleteOptions')
        preconditions = body.get("preconditions") or {}
        opts.precondition_rv = preconditions.get("resourceVersion")
        opts.precondition_uid = preconditions.get("uid")
        opts.dry_run = parse_dry_run(body.get("dryRun"))
        opts.grace_period_seconds = body.get("gracePeriodSeconds")
        opts.propagation_policy = body.get("propagationPolicy")
    opts.dry_run = opts.dry_run or parse_dry_run(query.get("dryRun"))
    grace = _int(query, "gracePeriodSeconds")
    opts.grace_period_seconds = grace if grace is not None else opts.grace_period_seconds
    opts.propagation_policy = _one(query, "propagationPolicy") or opts.propagation_policy
    if opts.propagation_policy not in (None, "Orphan", "Background", "Foreground"):
        raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                                       f'value: "{opts.propagation_policy}": supported values: "Foreground", '
                                       f'"Background", "Orphan", "nil"', {"group": "meta.k8s.io",
                                                                         "kind": "DeleteOptions"})
    return opts
