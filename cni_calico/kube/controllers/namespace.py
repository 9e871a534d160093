"""namespace: each Kubernetes Namespace as the profile `kns.<namespace>` (allow all; its labels,
`pcns.`-prefixed, for calico-node's namespace selectors); a `kns.*` profile whose namespace is
gone is deleted."""

from __future__ import annotations

from typing import Any

from .. import desired
from ..client import NAMESPACES
from ..reconcile import Owned
from .owned import OwnedObjectsController


class NamespaceController(OwnedObjectsController):
    name = "namespace"
    resources = (NAMESPACES,)
    source = NAMESPACES
    owned = Owned("profiles", desired.NAMESPACE_PROFILE_PREFIX)

    def target_key(self, source_key: str) -> str:
        return self.owned.key(desired.namespace_profile_name(source_key))

    def convert(self, source: dict[str, Any]) -> dict[str, Any]:
        return desired.namespace_profile(source)
