"""What the policy dataplane is computed from, and Calico's rules for which policy applies where.

Pure: the agent builds a `PolicyState` from etcd; `render` turns it into nftables. The
selection semantics follow Calico (libcalico-go's v3 -> v1 policy conversion, felix's policy
sorter and endpoint chains):

- a NetworkPolicy selects endpoints of its own namespace, a GlobalNetworkPolicy any namespace
  (narrowed by its `namespaceSelector`); doNotTrack and preDNAT policies are host-endpoint only;
- policies apply in `order` (missing = +infinity), ties by Calico's policy key name, which for a
  namespaced policy is `<namespace>/<name>`;
- a rule's selector, in a NetworkPolicy and without a namespaceSelector, only sees endpoints of
  the policy's namespace; its notSelector is never namespace-scoped; `global()` as a
  namespaceSelector selects non-namespaced entities only, hence no workload endpoint.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Mapping

from ...model import selector as _selector
from ...model.v3 import (
    EntityRule,
    GlobalNetworkPolicySpec,
    NetworkPolicySpec,
    ProfileSpec,
)

INGRESS = "Ingress"  # traffic to the workload
EGRESS = "Egress"  # traffic from the workload
DIRECTIONS = (INGRESS, EGRESS)

NAMESPACE_LABEL = "projectcalico.org/namespace"
NAMESPACE_NAME_LABEL = "projectcalico.org/name"  # Calico adds it to every namespace's labels
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
SERVICE_ACCOUNT_PREFIX = "pcsa."  # service account labels, as the endpoint carries them

ENDPOINT_TO_HOST_ACTIONS = ("Accept", "Drop", "Return")

PolicySpec = NetworkPolicySpec | GlobalNetworkPolicySpec


@dataclass(frozen=True)
class Endpoint:
    """One WorkloadEndpoint, local or on another node."""

    key: str  # unique id, e.g. "<namespace>/<wep name>"
    namespace: str
    iface: str  # host-side interface, e.g. "cali1234567890a"
    addresses: tuple[str, ...]  # "10.65.0.5/32", "fd00::5/128"
    labels: Mapping[str, str] = field(hash=False)  # merged: WEP labels over profiles' labelsToApply
    profiles: tuple[str, ...]
    local: bool  # on this node: gets a dispatch entry; remote ones only feed selector sets


@dataclass(frozen=True)
class Policy:
    kind: str  # "NetworkPolicy" (namespaced) or "GlobalNetworkPolicy"
    namespace: str | None
    name: str
    spec: PolicySpec = field(hash=False)  # validated, defaults applied (types, selector "all()")


@dataclass(frozen=True)
class PolicyState:
    endpoints: tuple[Endpoint, ...]
    policies: tuple[Policy, ...]
    profiles: Mapping[str, ProfileSpec] = field(hash=False)
    namespaces: Mapping[str, Mapping[str, str]] = field(hash=False)  # namespace -> its labels
    nat_pools: tuple[str, ...]  # CIDRs of pools with natOutgoing
    all_pools: tuple[str, ...]  # CIDRs of every pool
    endpoint_to_host: str = "Accept"  # after a workload's egress policy allows a packet to the host


# ------------------------------------------------------------------ identities and order

def policy_id(policy: Policy) -> str:
    """A unique, stable identity (chain names are hashed from it)."""
    if policy.kind == "NetworkPolicy":
        return f"NetworkPolicy/{policy.namespace}/{policy.name}"
    return f"GlobalNetworkPolicy/{policy.name}"


def policy_label(policy: Policy) -> str:
    """Short name for comments: `np:<namespace>/<name>` or `gnp:<name>`."""
    if policy.kind == "NetworkPolicy":
        return f"np:{policy.namespace}/{policy.name}"
    return f"gnp:{policy.name}"


def policy_sort_key(policy: Policy) -> tuple[float, str, str]:
    """Order first (missing = +inf), then Calico's key name; the kind only makes ties total."""
    order = policy.spec.order
    key_name = f"{policy.namespace}/{policy.name}" if policy.kind == "NetworkPolicy" else policy.name
    return (math.inf if order is None else float(order), key_name, policy.kind)


# ------------------------------------------------------------------ labels

# Each selector is evaluated against every endpoint: parse it once.
_predicate = functools.lru_cache(maxsize=4096)(_selector.parse)


def _matches(text: str | None, labels: Mapping[str, str]) -> bool:
    return _predicate(text or "")(labels)


def namespace_labels(state: PolicyState, namespace: str) -> dict[str, str]:
    labels = dict(state.namespaces.get(namespace, {}))
    labels.setdefault(NAMESPACE_NAME_LABEL, namespace)
    return labels


def _service_account_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Calico matches a service-account selector against `pcsa.`-prefixed labels: strip the prefix
    rather than rewrite the selector."""
    n = len(SERVICE_ACCOUNT_PREFIX)
    return {k[n:]: v for k, v in labels.items() if k.startswith(SERVICE_ACCOUNT_PREFIX)}


def _is_global(text: str) -> bool:
    return re.sub(r"\s", "", text) == "global()"


def _namespace_selected(text: str, ns_labels: Mapping[str, str]) -> bool:
    # global() means "not namespaced": every workload endpoint is namespaced
    return not _is_global(text) and _matches(text, ns_labels)


# ------------------------------------------------------------------ policy selection

def policy_selects(policy: Policy, endpoint: Endpoint, state: PolicyState) -> bool:
    spec = policy.spec
    if policy.kind == "NetworkPolicy":
        if policy.namespace != endpoint.namespace:
            return False
    elif not isinstance(spec, GlobalNetworkPolicySpec) or spec.doNotTrack or spec.preDNAT:
        return False  # untracked and pre-DNAT policies apply to host endpoints only
    elif spec.namespaceSelector and not _namespace_selected(
            spec.namespaceSelector, namespace_labels(state, endpoint.namespace)):
        return False
    if spec.serviceAccountSelector and not _matches(
            spec.serviceAccountSelector, _service_account_labels(endpoint.labels)):
        return False
    return _matches(spec.selector, endpoint.labels)


def applicable_policies(state: PolicyState, endpoint: Endpoint, direction: str) -> tuple[Policy, ...]:
    """The policies that govern `endpoint` in `direction`, in evaluation order."""
    chosen = [p for p in state.policies
              if direction in (p.spec.types or ()) and policy_selects(p, endpoint, state)]
    return tuple(sorted(chosen, key=policy_sort_key))


def _identity(endpoint: Endpoint) -> tuple[str, tuple[tuple[str, str], ...]]:
    """All that selection can see of an endpoint: its namespace and its labels."""
    return endpoint.namespace, tuple(sorted(endpoint.labels.items()))


class Selection:
    """Policy selection and selector membership for one state, computed once per group of
    endpoints that look alike (same namespace and labels: replicas of one workload) instead of
    once per endpoint: the renderer asks for every endpoint and every rule selector."""

    def __init__(self, state: PolicyState) -> None:
        self.state = state
        self.groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[Endpoint]] = {}
        for endpoint in state.endpoints:
            self.groups.setdefault(_identity(endpoint), []).append(endpoint)
        self._policies: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Policy, ...]] = {}

    def applicable_policies(self, endpoint: Endpoint, direction: str) -> tuple[Policy, ...]:
        key = _identity(endpoint)
        if key not in self._policies:
            self._policies[key] = tuple(sorted((p for p in self.state.policies
                                                if policy_selects(p, endpoint, self.state)), key=policy_sort_key))
        return tuple(p for p in self._policies[key] if direction in (p.spec.types or ()))

    def addresses(self, sel: EndpointSelector) -> tuple[str, ...]:
        """The addresses of every endpoint, local or remote, that `sel` matches (unsorted)."""
        return tuple(address for members in self.groups.values() if sel.matches(members[0], self.state)
                     for endpoint in members for address in endpoint.addresses)


# ------------------------------------------------------------------ rule entity selectors

@dataclass(frozen=True)
class EndpointSelector:
    """Which endpoints (by their addresses) one side of a rule matches: all conditions AND-ed."""

    selector: str | None = None  # over the endpoint's labels
    namespace: str | None = None  # exactly this namespace (a NetworkPolicy's own)
    namespace_selector: str | None = None  # over the labels of the endpoint's namespace
    service_accounts: tuple[str, ...] = ()  # projectcalico.org/serviceaccount in {...}
    service_account_selector: str | None = None

    def text(self) -> str:
        """A readable canonical form: the key of the named set and its comment."""
        parts = []
        if self.namespace is not None:
            parts.append(f"{NAMESPACE_LABEL} == '{self.namespace}'")
        if self.namespace_selector is not None:
            parts.append(f"namespace({self.namespace_selector})")
        if self.service_accounts:
            parts.append(f"serviceaccount in {{{', '.join(repr(n) for n in self.service_accounts)}}}")
        if self.service_account_selector is not None:
            parts.append(f"serviceaccount({self.service_account_selector})")
        if self.selector is not None:
            parts.append(f"({self.selector})")
        return " && ".join(parts) or "all()"

    def matches(self, endpoint: Endpoint, state: PolicyState) -> bool:
        if self.namespace is not None and endpoint.namespace != self.namespace:
            return False
        if self.namespace_selector is not None and not _namespace_selected(
                self.namespace_selector, namespace_labels(state, endpoint.namespace)):
            return False
        if self.service_accounts and endpoint.labels.get(SERVICE_ACCOUNT_LABEL) not in self.service_accounts:
            return False
        if self.service_account_selector is not None and not _matches(
                self.service_account_selector, _service_account_labels(endpoint.labels)):
            return False
        return self.selector is None or _matches(self.selector, endpoint.labels)


def rule_selectors(entity: EntityRule | None, policy_namespace: str | None
                   ) -> tuple[EndpointSelector | None, EndpointSelector | None]:
    """(positive, negative) endpoint matches of one rule side; None where the side has none.

    As Calico's getEndpointSelector: the namespace scope (the namespaceSelector, else a
    NetworkPolicy's own namespace) is added as soon as selector, notSelector or
    namespaceSelector is used; the notSelector itself stays unscoped."""
    if entity is None:
        return None, None
    accounts = entity.serviceAccounts
    names = tuple(sorted(accounts.names or ())) if accounts else ()
    sa_selector = accounts.selector if accounts and accounts.selector else None
    own_parts = bool(entity.selector or names or sa_selector)
    scope = bool(entity.namespaceSelector or policy_namespace)
    positive = None
    if own_parts or (scope and (entity.notSelector or entity.namespaceSelector)):
        positive = EndpointSelector(
            selector=entity.selector or None,
            namespace=None if entity.namespaceSelector else policy_namespace,
            namespace_selector=entity.namespaceSelector or None,
            service_accounts=names,
            service_account_selector=sa_selector,
        )
    negative = EndpointSelector(selector=entity.notSelector) if entity.notSelector else None
    return positive, negative
