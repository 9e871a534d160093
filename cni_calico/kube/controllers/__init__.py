"""The controllers by the names ENABLED_CONTROLLERS uses: one module each."""

from __future__ import annotations

from .base import Context, Controller
from .namespace import NamespaceController
from .node import NodeController
from .policy import PolicyController
from .serviceaccount import ServiceAccountController
from .workloadendpoint import WorkloadEndpointController

BY_NAME: dict[str, type[Controller]] = {
    "policy": PolicyController,
    "namespace": NamespaceController,
    "serviceaccount": ServiceAccountController,
    "workloadendpoint": WorkloadEndpointController,
    "node": NodeController,
}

__all__ = ["BY_NAME", "Context", "Controller"]
