"""The resource types the stand-in serves, with the per-type facts the real API server has.

Each fact here decides a visible behaviour: which paths exist, which field selectors are
accepted, whether DELETE answers with the object or a Status, whether PUT may create, whether
an update must carry a resourceVersion, whether `metadata.generation` is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    has_status: bool = False  # a /status subresource: the main resource's writes keep the old status
    tracks_generation: bool = False  # metadata.generation counts spec changes
    returns_deleted_object: bool = False  # DELETE answers with the object rather than a Status
    allow_create_on_update: bool = False  # PUT of a missing object creates it
    allow_unconditional_update: bool = True  # PUT without metadata.resourceVersion is allowed
    name_is_dns_label: bool = False  # else a DNS subdomain
    field_labels: tuple[str, ...] = ()  # selectable fields besides metadata.name/namespace

    @property
    def id(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def selectable_fields(self) -> tuple[str, ...]:
        base = ("metadata.name", "metadata.namespace") if self.namespaced else ("metadata.name",)
        return base + self.field_labels


PODS = ResourceType("", "v1", "pods", "pod", "Pod", True, ("po",), has_status=True, tracks_generation=True,
                    returns_deleted_object=True,
                    field_labels=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                  "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                                  "status.nominatedNodeName"))
NAMESPACES = ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",),
                          verbs=("create", "delete", "get", "list", "patch", "update", "watch"), has_status=True,
                          returns_deleted_object=True, name_is_dns_label=True, field_labels=("status.phase",))
SERVICE_ACCOUNTS = ResourceType("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",),
                                returns_deleted_object=True)
NODES = ResourceType("", "v1", "nodes", "node", "Node", False, ("no",), has_status=True,
                     field_labels=("spec.unschedulable",))
NETWORK_POLICIES = ResourceType("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", True,
                                ("netpol",), tracks_generation=True)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True,
                      allow_create_on_update=True, allow_unconditional_update=False)

RESOURCE_TYPES: tuple[ResourceType, ...] = (PODS, NAMESPACES, SERVICE_ACCOUNTS, NODES, NETWORK_POLICIES, LEASES)


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def by_kind(kind: str) -> ResourceType:
    for rt in RESOURCE_TYPES:
        if rt.kind == kind:
            return rt
    raise KeyError(kind)


def groups() -> dict[str, list[str]]:
    """group -> its versions (the core group is "")."""
    found: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        versions = found.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)
    return found
