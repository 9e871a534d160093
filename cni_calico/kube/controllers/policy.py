"""policy: each Kubernetes NetworkPolicy as the Calico NetworkPolicy `knp.default.<name>` in its
namespace (the conversion `calicoctl convert` makes); a `knp.default.*` policy with no
NetworkPolicy behind it is deleted."""

from __future__ import annotations

from typing import Any

from .. import desired
from ..client import NETWORK_POLICIES
from ..reconcile import Owned
from .owned import OwnedObjectsController


class PolicyController(OwnedObjectsController):
    name = "policy"
    resources = (NETWORK_POLICIES,)
    source = NETWORK_POLICIES
    owned = Owned("networkpolicies", desired.POLICY_PREFIX)

    def target_key(self, source_key: str) -> str:
        namespace, _, name = source_key.partition("/")
        calico_namespace, calico_name = desired.policy_name(namespace, name)
        return self.owned.key(calico_name, calico_namespace)

    def convert(self, source: dict[str, Any]) -> dict[str, Any]:
        return desired.network_policy(source)
