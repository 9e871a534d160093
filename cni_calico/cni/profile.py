"""Which profile document an ADD writes beside its endpoint, decided from what the store holds. Pure.

A missing profile is created. A network profile still exactly as older versions of this project
wrote it (allow all: those versions isolated no network from another) is replaced by the network's
profile. Any other profile is somebody's choice and is left as it is, as Calico's CNI plugin never
updates a profile. What is written is first validated as calico-node will validate it: a profile it
would skip would leave the network's endpoints with no profile at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..model.v3 import API_VERSION, Profile, ValidationFailure, to_json, validate


class InvalidProfile(ValueError):
    """The profile cannot be written: calico-node (and Calico) would reject it."""


def profile_to_write(stored: str | None, name: str, wanted: Callable[[], Profile]) -> str | None:
    """The document to write at the key of profile `name`, or None to leave the key as it is.
    `wanted` makes the profile: only when it may be written (most ADDs find it in place)."""
    legacy = _legacy_network_profile(name)
    if stored is not None and _parsed(stored) != legacy:
        return None  # only the very document older versions wrote is replaced: any edit (a rule,
        # a label, calicoctl's uid and creationTimestamp) makes it a user's profile
    document = to_json(wanted())
    if stored is not None and json.loads(document) == legacy:
        return None  # nothing to change
    _check(document)
    return document


def _legacy_network_profile(name: str) -> dict[str, Any]:
    """What versions before network isolation stored for every network (to_json of an allow-all
    Profile), spelled out: it must not follow later changes of the models."""
    return {"apiVersion": API_VERSION, "kind": "Profile",
            "metadata": {"annotations": {}, "labels": {}, "name": name},
            "spec": {"egress": [{"action": "Allow"}], "ingress": [{"action": "Allow"}]}}


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _check(document: str) -> None:
    try:
        validate(json.loads(document))
    except ValidationFailure as exc:
        raise InvalidProfile(str(exc)) from None
