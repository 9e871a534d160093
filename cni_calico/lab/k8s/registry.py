"""The REST semantics of the served resources over the object store.

Create, update, patch and delete with the server-set metadata, optimistic concurrency on
resourceVersion, finalizers, the /status split, admission (namespace lifecycle, a pod's service
account) and the two controllers whose work every client sees: a new namespace gets its
`default` ServiceAccount, a deleted namespace is emptied before it goes.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Callable

from . import resources as r
from .errors import (
    STALE,
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    expired,
    forbidden,
    invalid,
    not_found,
    success_status,
    too_large_resource_version,
)
from .options import DeleteOptions, ListOptions, parse_resource_version
from .patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from .store import ObjectStore, TooOld
from .strategies import strategy
from .validation import name_causes, string_map_causes

Obj = dict[str, Any]
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")
NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def strip_type(obj: Obj) -> Obj:
    """Items of a typed list carry no kind or apiVersion, as in the real server's lists."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _without_rv(obj: Obj) -> Obj:
    copied = copy.deepcopy(obj)
    copied["metadata"].pop("resourceVersion", None)
    return copied


class Registry:
    def __init__(self, store: ObjectStore, *, clock: Callable[[], float] = time.time,
                 wait_for_version_seconds: float = 3.0) -> None:
        self.store = store
        self.clock = clock
        self.wait_for_version_seconds = wait_for_version_seconds  # before "Too large resource version"

    # ---- reads -------------------------------------------------------------------------------
    def get(self, rt: r.ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.id, (namespace, name))
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def wait_for_version(self, rv: int) -> None:
        """A read at a version the store has not reached waits a little, then is a 504 (as the watch cache)."""
        deadline = time.monotonic() + self.wait_for_version_seconds
        while self.store.rv < rv:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise too_large_resource_version(rv, self.store.rv)
            self.store.wait_for_change(self.store.rv, remaining)

    def list(self, rt: r.ResourceType, namespace: str | None, opts: ListOptions) -> Obj:
        at: int | None = None  # None: the current state
        start_after = ""
        if opts.continue_token:
            at, start_after = self._decode_continue(opts.continue_token)
        elif opts.resource_version is not None and opts.resource_version > 0:
            self.wait_for_version(opts.resource_version)
            if opts.resource_version_match == "Exact":
                at = opts.resource_version
        with self.store.lock:
            try:
                items = (self.store.items_at(rt.id, at, namespace) if at is not None
                         else self.store.items(rt.id, namespace))
            except TooOld as exc:
                if opts.continue_token:
                    raise expired("The provided continue parameter is too old to display a consistent list result. "
                                  "You can start a new list without the continue parameter, or use the continue "
                                  "token in this response to retrieve the remainder of the results. Continuing with "
                                  "the provided token results in an inconsistent list - objects that were created, "
                                  "modified, or deleted between the time the first chunk was returned and now may "
                                  "show up in the list.") from None
                raise expired(f"too old resource version: {exc.requested} ({exc.oldest})") from None
            list_rv = at if at is not None else self.store.rv
        items = [o for o in items if opts.labels.matches(o["metadata"].get("labels"))
                 and opts.fields.matches(o) and self._key(o) > start_after]
        metadata: Obj = {"resourceVersion": str(list_rv)}
        # A list at resourceVersion "0" is served whole from the cache: limit does not apply.
        if opts.limit and len(items) > opts.limit and opts.resource_version_raw != "0":
            rest = items[opts.limit:]
            items = items[:opts.limit]
            metadata["continue"] = self._encode_continue(list_rv, self._key(items[-1]))
            if not opts.labels.requirements and not opts.fields.terms:
                metadata["remainingItemCount"] = len(rest)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata,
                "items": [strip_type(o) for o in items]}

    @staticmethod
    def _key(obj: Obj) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', '')}/{meta['name']}"

    @staticmethod
    def _encode_continue(rv: int, last_key: str) -> str:
        token = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"}, separators=(",", ":"))
        return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, str]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if data.get("v") != "meta.k8s.io/v1" or not isinstance(data.get("rv"), int):
                raise ValueError("unknown version")
            return data["rv"], str(data["start"]).rstrip("\x00")
        except (ValueError, TypeError, binascii.Error, AttributeError):
            raise bad_request("continue key is not valid: incorrect encoded start resourceVersion (version "
                              "meta.k8s.io/v1)") from None

    # ---- writes ------------------------------------------------------------------------------
    def _decode(self, rt: r.ResourceType, body: Any, namespace: str, url_name: str | None) -> Obj:
        """The checks the decoder and the REST handler make before any semantics."""
        if not isinstance(body, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot '
                              f'unmarshal {type(body).__name__} into Go value of type {rt.kind}')
        obj = copy.deepcopy(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version is not None and api_version != rt.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version "
                              f"({rt.api_version})")
        if kind is not None and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: metadata must '
                              f'be an object')
        if rt.namespaced:
            body_ns = meta.get("namespace") or ""
            if body_ns and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if url_name is not None and meta.get("name", "") != url_name:
            raise bad_request(f"the name of the object ({meta.get('name', '')}) does not match the name on the URL "
                              f"({url_name})")
        meta.pop("selfLink", None)
        meta.pop("managedFields", None)
        return obj

    def _validate(self, rt: r.ResourceType, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        causes: list[Cause] = name_causes(meta["name"], rt.name_is_dns_label) if meta.get("name") else []
        causes += string_map_causes(meta.get("labels"), "metadata.labels", check_values=True)
        causes += string_map_causes(meta.get("annotations"), "metadata.annotations", check_values=False)
        strat = strategy(rt)
        causes += strat.validate(obj) if old is None else strat.validate_update(obj, old)
        if causes:
            raise invalid(rt.kind, rt.group, meta.get("name", ""), causes)

    def _check_namespace(self, rt: r.ResourceType, namespace: str, name: str) -> None:
        """NamespaceLifecycle admission: new content only in a namespace that exists and is not going away."""
        if not rt.namespaced:
            return
        ns = self.store.get(r.NAMESPACES.id, ("", namespace))
        if ns is None:
            raise not_found(r.NAMESPACES.plural, "", namespace)
        if (ns.get("status") or {}).get("phase") == "Terminating":
            raise forbidden(rt.plural, rt.group, name, f"unable to create new content in namespace {namespace} "
                                                       f"because it is being terminated")

    def _admit_pod(self, pod: Obj) -> None:
        """ServiceAccount and DefaultTolerationSeconds admission."""
        spec = pod["spec"]
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = account
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if self.store.get(r.SERVICE_ACCOUNTS.id, (namespace, account)) is None:
            raise forbidden("pods", "", name, f'error looking up service account {namespace}/{account}: '
                                              f'serviceaccount "{account}" not found')
        tolerations = spec.setdefault("tolerations", [])
        for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == taint for t in tolerations if isinstance(t, dict)):
                tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": 300})

    def create(self, rt: r.ResourceType, namespace: str, body: Any, *, dry_run: bool = False) -> Obj:
        with self.store.lock:
            obj = self._decode(rt, body, namespace, None)
            meta = obj["metadata"]
            if meta.get("resourceVersion"):
                raise ApiError(500, "InternalError", "Internal error occurred: resourceVersion should not be set on "
                                                     "objects to be created", {"causes": [{"message": "resourceVersion "
                                                     "should not be set on objects to be created"}]})
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise invalid(rt.kind, rt.group, "", [Cause("FieldValueRequired", "Required value: name or "
                                                                "generateName is required", "metadata.name")])
                meta["name"] = meta["generateName"] + "".join(random.choice(NAME_SUFFIX_ALPHABET) for _ in range(5))
            self._check_namespace(rt, namespace, meta["name"])
            strat = strategy(rt)
            strat.default(obj)
            strat.prepare_create(obj)
            for key in SERVER_OWNED_META:
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339(self.clock)
            if rt.tracks_generation:
                meta["generation"] = 1
            if rt is r.PODS:
                self._admit_pod(obj)
            self._validate(rt, obj, None)
            if self.store.get(rt.id, (meta.get("namespace", ""), meta["name"])) is not None:
                raise already_exists(rt.plural, rt.group, meta["name"])
            if dry_run:
                return obj
            created = self.store.commit(rt.id, obj, "ADDED")
            if rt is r.NAMESPACES:
                self._create_default_service_account(meta["name"])
            return created

    def _create_default_service_account(self, namespace: str) -> None:
        """What the service account controller does for each new namespace."""
        if self.store.get(r.SERVICE_ACCOUNTS.id, (namespace, "default")) is None:
            self.create(r.SERVICE_ACCOUNTS, namespace, {"metadata": {"name": "default"}})

    def update(self, rt: r.ResourceType, namespace: str, name: str, body: Any, *, subresource: str = "",
               dry_run: bool = False) -> tuple[Obj, bool]:
        """PUT: (the object, whether it was created)."""
        with self.store.lock:
            obj = self._decode(rt, body, namespace, name)
            old = self.store.get(rt.id, (namespace, name))
            if old is None:
                if rt.allow_create_on_update and not subresource:
                    obj["metadata"].pop("resourceVersion", None)
                    return self.create(rt, namespace, obj, dry_run=dry_run), True
                raise not_found(rt.plural, rt.group, name)
            given = obj["metadata"].get("resourceVersion")
            if not given:
                if not rt.allow_unconditional_update:
                    raise invalid(rt.kind, rt.group, name, [Cause("FieldValueInvalid", "Invalid value: 0x0: must be "
                                                                  "specified for an update",
                                                                  "metadata.resourceVersion")])
            else:
                parse_resource_version(given)
                if given != old["metadata"]["resourceVersion"]:
                    raise conflict(rt.plural, rt.group, name, STALE)
            return self._write_update(rt, obj, old, subresource, dry_run), False

    def _write_update(self, rt: r.ResourceType, obj: Obj, old: Obj, subresource: str, dry_run: bool) -> Obj:
        strat = strategy(rt)
        meta, old_meta = obj["metadata"], old["metadata"]
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise conflict(rt.plural, rt.group, old_meta["name"],
                           f"Precondition failed: UID in precondition: {meta['uid']}, "
                           f"UID in object meta: {old_meta['uid']}")
        if subresource == "status":
            obj = strat.prepare_status_update(obj, old)
            meta = obj["metadata"]
        else:
            strat.default(obj)
            strat.prepare_update(obj, old)
        for key in SERVER_OWNED_META:
            meta.pop(key, None)
            if key in old_meta:
                meta[key] = old_meta[key]
        if rt.tracks_generation and strat.spec(obj) != strat.spec(old):
            meta["generation"] = old_meta.get("generation", 0) + 1
        meta["resourceVersion"] = old_meta["resourceVersion"]
        self._validate(rt, obj, old)
        if obj == old:
            return old  # a no-op write keeps the version and makes no event, as etcd's guaranteed update
        if dry_run:
            return obj
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._finish_delete(rt, obj, old)
        return self.store.commit(rt.id, obj, "MODIFIED")

    def patch(self, rt: r.ResourceType, namespace: str, name: str, patch_type: str, patch: Any, *,
              subresource: str = "", dry_run: bool = False) -> Obj:
        with self.store.lock:
            old = self.store.get(rt.id, (namespace, name))
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            try:
                if patch_type == "application/json-patch+json":
                    patched = json_patch(old, patch)
                elif patch_type == "application/merge-patch+json":
                    if not isinstance(patch, dict):
                        raise PatchError("a merge patch must be a JSON object")
                    patched = merge_patch(old, patch)
                else:
                    patched = strategic_merge_patch(old, patch)
            except PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from None
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patched object has no metadata")
            given = patched["metadata"].get("resourceVersion")
            if given != old["metadata"]["resourceVersion"]:
                if given:  # a resourceVersion in the patch is a precondition
                    raise conflict(rt.plural, rt.group, name, STALE)
                patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            obj = self._decode(rt, patched, namespace, name)
            return self._write_update(rt, obj, old, subresource, dry_run)

    # ---- deletes -----------------------------------------------------------------------------
    def delete(self, rt: r.ResourceType, namespace: str, name: str, opts: DeleteOptions | None = None) -> Obj:
        opts = opts or DeleteOptions()
        with self.store.lock:
            old = self.store.get(rt.id, (namespace, name))
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            meta = old["metadata"]
            if opts.precondition_uid and opts.precondition_uid != meta["uid"]:
                raise conflict(rt.plural, rt.group, name, f"Precondition failed: UID in precondition: "
                                                          f"{opts.precondition_uid}, UID in object meta: {meta['uid']}")
            if opts.precondition_rv and opts.precondition_rv != meta["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name, f"Precondition failed: ResourceVersion in precondition: "
                                                          f"{opts.precondition_rv}, ResourceVersion in object meta: "
                                                          f"{meta['resourceVersion']}")
            if opts.dry_run:
                return old if rt.returns_deleted_object else self._deleted_status(rt, old)
            if rt is r.NAMESPACES:
                return self._delete_namespace(old)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return old
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = now_rfc3339(self.clock)
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                return self.store.commit(rt.id, marked, "MODIFIED")
            return self._finish_delete(rt, old, old)

    def _finish_delete(self, rt: r.ResourceType, last: Obj, old: Obj) -> Obj:
        self.store.commit(rt.id, last, "DELETED")
        namespace = old["metadata"].get("namespace")
        if namespace:
            self._maybe_finalize_namespace(namespace)
        return old if rt.returns_deleted_object else self._deleted_status(rt, old)

    @staticmethod
    def _deleted_status(rt: r.ResourceType, obj: Obj) -> Obj:
        details: Obj = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details.update(kind=rt.plural, uid=obj["metadata"]["uid"])
        return success_status(details)

    def _delete_namespace(self, ns: Obj) -> Obj:
        """Mark it Terminating, then (the namespace controller) delete its content, then the namespace."""
        name = ns["metadata"]["name"]
        if (ns.get("status") or {}).get("phase") == "Terminating":
            return ns
        terminating = copy.deepcopy(ns)
        terminating["metadata"]["deletionTimestamp"] = now_rfc3339(self.clock)
        terminating["metadata"]["deletionGracePeriodSeconds"] = 0
        terminating["status"] = {"phase": "Terminating"}
        terminating = self.store.commit(r.NAMESPACES.id, terminating, "MODIFIED")
        for rt in r.RESOURCE_TYPES:
            if rt.namespaced:
                for obj in self.store.items(rt.id, name):
                    self.delete(rt, name, obj["metadata"]["name"])
        self._maybe_finalize_namespace(name)
        return terminating

    def _maybe_finalize_namespace(self, name: str) -> None:
        ns = self.store.get(r.NAMESPACES.id, ("", name))
        if ns is None or (ns.get("status") or {}).get("phase") != "Terminating":
            return
        if any(self.store.items(rt.id, name) for rt in r.RESOURCE_TYPES if rt.namespaced):
            return
        if (ns.get("spec") or {}).get("finalizers"):
            ns["spec"]["finalizers"] = []
            ns = self.store.commit(r.NAMESPACES.id, ns, "MODIFIED")
        if not ns["metadata"].get("finalizers"):
            self.store.commit(r.NAMESPACES.id, ns, "DELETED")

    def delete_collection(self, rt: r.ResourceType, namespace: str, list_opts: ListOptions,
                          delete_opts: DeleteOptions) -> Obj:
        with self.store.lock:
            listed = self.list(rt, namespace, ListOptions(labels=list_opts.labels, fields=list_opts.fields))
            deleted = []
            for item in listed["items"]:
                result = self.delete(rt, namespace, item["metadata"]["name"], delete_opts)
                deleted.append(strip_type(result) if result.get("kind") != "Status" else item)
            return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted}
