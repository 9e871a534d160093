"""The discovery documents a client may read first: /api, /apis, /api/v1, /apis/{group}/{version}, /version."""

from __future__ import annotations

from typing import Any

from . import resources as r

VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, v) for g, v in r.groups().items() if g]}


def api_group(name: str) -> dict[str, Any] | None:
    versions = r.groups().get(name)
    if not name or versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = [rt for rt in r.RESOURCE_TYPES if (rt.group, rt.version) == (group, version)]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for rt in served:
        entry: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                                 "kind": rt.kind, "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt is r.PODS:
            entry["categories"] = ["all"]
        entries.append(entry)
        if rt.has_status:
            entries.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                            "kind": rt.kind, "verbs": ["get", "patch", "update"]})
    document: dict[str, Any] = {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version,
                                "resources": entries}
    if group:
        document["apiVersion"] = "v1"
    return document
