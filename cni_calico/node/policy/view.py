"""The policy dataplane's input, read out of the agent's cache. Pure.

Endpoints are every WorkloadEndpoint in the cluster (remote ones only feed selector sets); their
labels are the profiles' labelsToApply overlaid by the endpoint's own labels, as Calico merges
them. A namespace's labels come from its `kns.<namespace>` profile, whose labelsToApply carry them
with the `pcns.` prefix (what Calico's Kubernetes controller writes), plus
`projectcalico.org/name`. A document that fails validation is skipped with a warning: one bad
policy written past calicoctl must not stop every other policy from being enforced.
"""

from __future__ import annotations

import functools
import json
import logging

from pydantic import ValidationError

from ...model import keys, v3
from ..cache import Cache
from ..routing.view import pools
from .model import NAMESPACE_NAME_LABEL, Endpoint, Policy, PolicyState

log = logging.getLogger(__name__)

POLICY_PLURALS = ("workloadendpoints", "profiles", "networkpolicies", "globalnetworkpolicies", "ippools")
POLICY_PREFIXES = tuple(keys.resource_prefix(plural) for plural in POLICY_PLURALS)
NAMESPACE_PROFILE_PREFIX = "kns."
NAMESPACE_LABEL_PREFIX = "pcns."


def affects_policy(key: str) -> bool:
    return key.startswith(POLICY_PREFIXES)


# Every change re-derives the whole state; most documents are the same strings as last time, so
# their parsed forms are kept (keyed by the stored text).
@functools.lru_cache(maxsize=16384)
def _parse_endpoint(value: str) -> v3.WorkloadEndpoint:
    return v3.WorkloadEndpoint.model_validate_json(value)


@functools.lru_cache(maxsize=4096)
def _validate(value: str) -> v3.Resource:
    # Policies and profiles are read strictly, as calicoctl writes them (with Calico's defaults,
    # such as a policy's types): what the renderer cannot trust is skipped, not programmed.
    return v3.validate(json.loads(value))


def _validated(cache: Cache, plural: str) -> list[v3.Resource]:
    out = []
    for key, value in sorted(cache.under(keys.resource_prefix(plural)).items()):
        try:
            out.append(_validate(value))
        except (ValueError, v3.ValidationFailure) as exc:  # bad JSON is a ValueError too
            log.warning("ignoring %s: %s", key, exc)
    return out


def profiles(cache: Cache) -> dict[str, v3.ProfileSpec]:
    return {p.metadata.name: p.spec for p in _validated(cache, "profiles") if isinstance(p, v3.Profile)}


def namespaces(profile_specs: dict[str, v3.ProfileSpec]) -> dict[str, dict[str, str]]:
    out = {}
    for name, spec in profile_specs.items():
        if name.startswith(NAMESPACE_PROFILE_PREFIX):
            namespace = name[len(NAMESPACE_PROFILE_PREFIX):]
            labels = {k[len(NAMESPACE_LABEL_PREFIX):]: v for k, v in (spec.labelsToApply or {}).items()
                      if k.startswith(NAMESPACE_LABEL_PREFIX)}
            labels[NAMESPACE_NAME_LABEL] = namespace
            out[namespace] = labels
    return out


def endpoints(cache: Cache, node: str, profile_specs: dict[str, v3.ProfileSpec]) -> list[Endpoint]:
    out = []
    for key, value in sorted(cache.under(keys.resource_prefix("workloadendpoints")).items()):
        try:
            wep = _parse_endpoint(value)
        except ValidationError as exc:  # also what pydantic says of text that is not JSON
            log.warning("ignoring %s: %s", key, str(exc).splitlines()[0])
            continue
        labels: dict[str, str] = {}
        for profile in wep.spec.profiles or ():
            labels.update((profile_specs[profile].labelsToApply or {}) if profile in profile_specs else {})
        labels.update(wep.metadata.labels or {})
        namespace = wep.metadata.namespace or "default"
        out.append(Endpoint(key=f"{namespace}/{wep.metadata.name}", namespace=namespace,
                            iface=wep.spec.interfaceName, addresses=tuple(wep.spec.ipNetworks or ()), labels=labels,
                            profiles=tuple(wep.spec.profiles or ()), local=wep.spec.node == node))
    return out


def policies(cache: Cache) -> list[Policy]:
    out = []
    for plural in ("networkpolicies", "globalnetworkpolicies"):
        for resource in _validated(cache, plural):
            if isinstance(resource, (v3.NetworkPolicy, v3.GlobalNetworkPolicy)):
                namespaced = isinstance(resource, v3.NetworkPolicy)
                out.append(Policy(kind=resource.kind, name=resource.metadata.name, spec=resource.spec,
                                  namespace=(resource.metadata.namespace or "default") if namespaced else None))
    return out


def policy_state(cache: Cache, node: str, endpoint_to_host: str = "Accept") -> PolicyState:
    profile_specs = profiles(cache)
    all_pools = pools(cache)
    return PolicyState(
        endpoints=tuple(endpoints(cache, node, profile_specs)),
        policies=tuple(policies(cache)),
        profiles=profile_specs,
        namespaces=namespaces(profile_specs),
        nat_pools=tuple(str(p.network) for p in all_pools if p.spec.natOutgoing),
        all_pools=tuple(str(p.network) for p in all_pools),
        endpoint_to_host=endpoint_to_host,
    )
