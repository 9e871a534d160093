"""Which resource, namespace, object and subresource a request path names, exactly as the real paths go.

/api/v1/{plural}[/{name}[/{sub}]]                                  cluster-scoped, or a list of all namespaces
/api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]                  namespaced
/apis/{group}/{version}/...                                          the same for a named group
/api/v1/watch/...                                                    the deprecated watch paths
"""

from __future__ import annotations

from dataclasses import dataclass

from . import resources as r


@dataclass(frozen=True)
class ResourcePath:
    rt: r.ResourceType
    namespace: str | None  # None: every namespace (namespaced types) or cluster-scoped
    name: str | None  # None: the collection
    subresource: str = ""
    watch_path: bool = False

    @property
    def is_collection(self) -> bool:
        return self.name is None


@dataclass(frozen=True)
class DiscoveryPath:
    group: str | None  # None: /api or /apis
    version: str | None
    legacy: bool  # under /api


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part != ""] if path != "/" else []


def route(path: str) -> ResourcePath | DiscoveryPath | None:
    parts = _split(path)
    if not parts or parts[0] not in ("api", "apis") or "" in path.strip("/").split("/"):
        return None
    if parts[0] == "api":
        if len(parts) == 1:
            return DiscoveryPath(None, None, True)
        group, version, rest = "", parts[1], parts[2:]
        if version != "v1":
            return None
        if not rest:
            return DiscoveryPath("", version, True)
    else:
        if len(parts) == 1:
            return DiscoveryPath(None, None, False)
        if len(parts) == 2:
            return DiscoveryPath(parts[1], None, False)
        group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            return DiscoveryPath(group, version, False)
    watch_path = False
    if rest[0] == "watch":
        watch_path, rest = True, rest[1:]
    return _resource(group, version, rest, watch_path)


def _resource(group: str, version: str, rest: list[str], watch_path: bool) -> ResourcePath | None:
    namespace: str | None = None
    rt = r.find(group, version, rest[2]) if len(rest) >= 3 and rest[0] == "namespaces" else None
    if rt is not None and rt.namespaced:
        namespace, rest = rest[1], rest[2:]
    else:  # a cluster-scoped path, or /namespaces/{name}[/{sub}] itself
        rt = r.find(group, version, rest[0]) if rest else None
        if rt is None:
            return None
        if rt.namespaced and len(rest) > 1:
            return None  # a namespaced object needs its namespace in the path
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3 or (subresource and not (subresource == "status" and rt.has_status)):
        return None
    if watch_path and subresource:
        return None
    return ResourcePath(rt, namespace, name, subresource, watch_path)
