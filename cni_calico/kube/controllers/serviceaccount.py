"""serviceaccount: each Kubernetes ServiceAccount as the profile `ksa.<namespace>.<name>` (no
rules; its labels, `pcsa.`-prefixed); a `ksa.*` profile whose account is gone is deleted."""

from __future__ import annotations

from typing import Any

from .. import desired
from ..client import SERVICE_ACCOUNTS
from ..reconcile import Owned
from .owned import OwnedObjectsController


class ServiceAccountController(OwnedObjectsController):
    name = "serviceaccount"
    resources = (SERVICE_ACCOUNTS,)
    source = SERVICE_ACCOUNTS
    owned = Owned("profiles", desired.SERVICE_ACCOUNT_PROFILE_PREFIX)

    def target_key(self, source_key: str) -> str:
        namespace, _, name = source_key.partition("/")
        return self.owned.key(desired.service_account_profile_name(namespace, name))

    def convert(self, source: dict[str, Any]) -> dict[str, Any]:
        return desired.service_account_profile(source)
