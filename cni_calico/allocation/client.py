"""IPAM on the datastore: blocks with node affinity, handles, and every write a compare-and-swap.

The pure parts live in block.py (one block) and pools.py (which pools, which block next);
this module reads, decides with them, and writes with `Datastore.txn`, retrying only when
a write lost a race. A block and its handle are written in one transaction, so an
allocation never exists without its handle record (nor the reverse).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, TypeVar

import netaddr

from ..datastore import (
    CONFLICT,
    MAX_ATTEMPTS,
    Conflict,
    Datastore,
    KeyValue,
    retry_on_conflict,
)
from ..errors import ADDRESS_TAKEN, POOL_EXHAUSTED, CniError
from ..model import keys
from ..model.v3 import IPAMConfigurationSpec, IPPool, Node
from . import pools
from .block import AddressInUse, AllocationBlock

log = logging.getLogger(__name__)

T = TypeVar("T")

PENDING = json.dumps({"state": "pending", "deleted": False})
CONFIRMED = json.dumps({"state": "confirmed", "deleted": False})


@dataclass(frozen=True)
class Request:
    """One auto-assignment: how many addresses of each family, from which pools."""

    handle_id: str
    attrs: dict[str, str]
    num_v4: int = 1
    num_v6: int = 0
    pools_v4: Sequence[str] = ()
    pools_v6: Sequence[str] = ()


@dataclass(frozen=True)
class ReleaseOptions:
    """One address to free (Calico's ReleaseOptions). With `handle_id` and `sequence_number` set,
    the address is freed only while it is still that very allocation: a stale report must not
    free an address that was released and handed out again since."""

    address: netaddr.IPAddress
    handle_id: str | None = None
    sequence_number: int | None = None


def _handle_json(handle_id: str, blocks: dict[str, int]) -> str:
    return json.dumps({"handleID": handle_id, "block": blocks, "deleted": False})


def _handle_blocks(kv: KeyValue | None) -> dict[str, int]:
    return dict(json.loads(kv.value).get("block") or {}) if kv else {}


def _still_allocated(block: AllocationBlock, option: ReleaseOptions) -> bool:
    ordinal = block.ordinal(option.address)
    if block.allocations[ordinal] is None:
        return False
    if option.handle_id is not None and block.handle_of(ordinal) != option.handle_id:
        return False
    sequence = block.sequenceNumberForAllocation.get(str(ordinal), 0)
    return option.sequence_number is None or sequence == option.sequence_number


def assignment_reads(handle_id: str, node: str, versions: Iterable[int]) -> tuple[list[str], list[str]]:
    """What an assignment reads first (keys, prefixes): its handle, the IPAM config, the pools and
    the node's affinities. A caller batches them (see Prefetched) with reads of its own."""
    return ([keys.handle(handle_id), keys.IPAM_CONFIG],
            [keys.resource_prefix("ippools"), *(keys.affinity_prefix(node, v) for v in versions)])


class IpamClient:
    def __init__(self, datastore: Datastore, node: str, *, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.ds = datastore
        self.node = node
        self.max_attempts = max_attempts

    # ------------------------------------------------------------ reads

    def config(self) -> IPAMConfigurationSpec:
        kv = self.ds.get(keys.IPAM_CONFIG)
        return IPAMConfigurationSpec.from_ipam_json(kv.value if kv else None)

    def pools(self) -> list[IPPool]:
        return [IPPool.model_validate_json(kv.value) for kv in self.ds.list(keys.resource_prefix("ippools"))]

    def node_labels(self, all_pools: Iterable[IPPool]) -> dict[str, str]:
        # Only a real selector needs the Node resource: skip the round trip otherwise.
        if all((p.spec.nodeSelector or "").strip() in ("", "all()") for p in all_pools):
            return {}
        kv = self.ds.get(keys.resource("nodes", self.node))
        return (Node.model_validate_json(kv.value).metadata.labels or {}) if kv else {}

    def block(self, cidr: netaddr.IPNetwork) -> tuple[AllocationBlock, int] | None:
        kv = self.ds.get(keys.block(cidr))
        return (AllocationBlock.from_json(kv.value), kv.mod_revision) if kv else None

    def addresses_of(self, handle_id: str) -> list[netaddr.IPNetwork]:
        """The addresses a handle holds, each with its block's prefix length."""
        out = []
        for cidr in _handle_blocks(self.ds.get(keys.handle(handle_id))):
            found = self.block(netaddr.IPNetwork(cidr))
            if found:
                block = found[0]
                out += [netaddr.IPNetwork(f"{ip}/{block.network.prefixlen}") for ip in block.addresses_of(handle_id)]
        return sorted(out, key=lambda n: (n.version, n.first))

    def attributes_of(self, handle_id: str) -> list[dict[str, str]]:
        """The allocation attributes (node, pod, namespace, ...) of every address a handle holds."""
        found = []
        for cidr in _handle_blocks(self.ds.get(keys.handle(handle_id))):
            block = self.block(netaddr.IPNetwork(cidr))
            if block:
                found += [dict(attr.secondary or {}) for _, attr in block[0].allocated() if attr.handle_id == handle_id]
        return found

    # ------------------------------------------------------------ assignment

    def auto_assign(self, request: Request) -> list[netaddr.IPNetwork]:
        """Assign every address asked for, or none: a partial result is released before raising."""
        try:
            got = []
            if request.num_v4:
                got += self._assign_family(request, 4, request.num_v4, request.pools_v4)
            if request.num_v6:
                got += self._assign_family(request, 6, request.num_v6, request.pools_v6)
            return got
        except BaseException:
            self._release_quietly(request.handle_id)
            raise

    def _assign_family(self, request: Request, version: int, count: int,
                       requested: Sequence[str]) -> list[netaddr.IPNetwork]:
        all_pools = self.pools()
        usable = pools.usable_pools(all_pools, version, self.node, self.node_labels(all_pools), requested)
        config = self.config()
        got: list[netaddr.IPNetwork] = []

        affine = self._affine_blocks(version, usable)
        for cidr in affine:  # 1. this node's own blocks
            got += self._assign_from_block(cidr, request, count - len(got), own_only=True)
            if len(got) == count:
                return got
        while config.autoAllocateBlocks and len(got) < count:  # 2. claim a new block
            if config.maxBlocksPerHost and len(affine) >= config.maxBlocksPerHost:
                log.info("node %s holds %d blocks, the limit", self.node, len(affine))
                break
            claimed = self._claim_free_block(usable)
            if claimed is None:
                break
            affine.append(claimed)
            got += self._assign_from_block(claimed, request, count - len(got), own_only=True)
        if len(got) < count and not config.strictAffinity:  # 3. borrow from other nodes' blocks
            for cidr in self._borrowable_blocks(version, usable):
                got += self._assign_from_block(cidr, request, count - len(got), own_only=False)
                if len(got) == count:
                    break
        if len(got) < count:
            names = ", ".join(f"{p.name} ({p.network})" for p in usable)
            raise CniError(POOL_EXHAUSTED, f"no free IPv{version} address for node {self.node!r} in {names}",
                           "add a pool, release unused addresses (calicoctl ipam check), or raise maxBlocksPerHost"
                           if not config.strictAffinity else "strict affinity forbids borrowing; add a pool")
        return got

    def _assign_from_block(self, cidr: netaddr.IPNetwork, request: Request, count: int,
                           own_only: bool) -> list[netaddr.IPNetwork]:
        def attempt() -> list[netaddr.IPNetwork] | Conflict:
            block_kv, handle_kv = self._block_and_handle(cidr, request.handle_id)
            if not block_kv:
                return []
            block = AllocationBlock.from_json(block_kv.value)
            if own_only and block.host != self.node:
                return []
            new_block, taken = block.assign(count, request.handle_id, request.attrs)
            if not taken:
                return []
            if not self._write_block_and_handle(cidr, new_block, block_kv.mod_revision, handle_kv, request.handle_id,
                                                len(taken)):
                return CONFLICT
            return [netaddr.IPNetwork(f"{ip}/{cidr.prefixlen}") for ip in taken]

        return self._retry(attempt, f"assigning from block {cidr}")

    def assign_address(self, handle_id: str, attrs: dict[str, str], address: netaddr.IPAddress) -> netaddr.IPNetwork:
        """Assign one given address (CNI_ARGS IP=...); its block is claimed for this node if new."""
        enabled = [p for p in self.pools() if not p.spec.disabled and p.network.version == address.version]
        pool = pools.pool_containing(enabled, address)
        cidr = pools.block_containing(pool, address)

        def attempt() -> netaddr.IPNetwork | Conflict:
            block_kv, handle_kv = self._block_and_handle(cidr, handle_id)
            if not block_kv:
                self._claim(cidr)
                return CONFLICT  # read the block we (or a racing node) just created
            try:
                new_block = AllocationBlock.from_json(block_kv.value).assign_address(address, handle_id, attrs)
            except AddressInUse as exc:
                raise CniError(ADDRESS_TAKEN, f"requested address {address} is already in use",
                               str(exc)) from None
            if not self._write_block_and_handle(cidr, new_block, block_kv.mod_revision, handle_kv, handle_id, 1):
                return CONFLICT
            return netaddr.IPNetwork(f"{address}/{32 if address.version == 4 else 128}")

        return self._retry(attempt, f"assigning {address}")

    def _block_and_handle(self, cidr: netaddr.IPNetwork, handle_id: str) -> tuple[KeyValue | None, KeyValue | None]:
        """Both keys an assignment writes, read in one round trip."""
        found = self.ds.get_many([keys.block(cidr), keys.handle(handle_id)])
        return found[keys.block(cidr)], found[keys.handle(handle_id)]

    def _write_block_and_handle(self, cidr: netaddr.IPNetwork, block: AllocationBlock, block_revision: int,
                                handle_kv: KeyValue | None, handle_id: str, added: int) -> bool:
        counts = _handle_blocks(handle_kv)
        counts[str(cidr)] = counts.get(str(cidr), 0) + added
        return self.ds.txn(
            {keys.block(cidr): block_revision, keys.handle(handle_id): handle_kv.mod_revision if handle_kv else 0},
            {keys.block(cidr): block.to_json(), keys.handle(handle_id): _handle_json(handle_id, counts)},
        )

    # ------------------------------------------------------------ blocks and affinity

    def _affine_blocks(self, version: int, usable: Sequence[IPPool]) -> list[netaddr.IPNetwork]:
        """This node's blocks inside the usable pools; finishes or drops half-done claims."""
        out = []
        for kv in self.ds.list(keys.affinity_prefix(self.node, version)):
            cidr = keys.cidr_from_segment(kv.key.rsplit("/", 1)[1])
            if not any(cidr in p.network for p in usable):
                continue
            if json.loads(kv.value).get("state") == "pending" and not self._recover_pending(cidr, kv):
                continue
            out.append(cidr)
        return out

    def _recover_pending(self, cidr: netaddr.IPNetwork, affinity: KeyValue) -> bool:
        """A claim interrupted between its phases: confirm it if the block is ours, drop it if another's."""
        found = self.block(cidr)
        if found is None:
            return False  # phase 2 never happened (or is happening now): it owns nothing yet
        if found[0].host == self.node:
            self.ds.update(affinity.key, CONFIRMED, affinity.mod_revision)
            return True
        self.ds.delete(affinity.key, affinity.mod_revision)
        return False

    def _claim_free_block(self, usable: Sequence[IPPool]) -> netaddr.IPNetwork | None:
        existing = {kv.key for kv in self.ds.list(keys.block_prefix(usable[0].network.version))}
        for pool in usable:
            for cidr in pools.candidate_blocks(pool, self.node):
                if keys.block(cidr) in existing:
                    continue
                if self._claim(cidr):
                    return cidr
                existing.add(keys.block(cidr))
        return None

    def _claim(self, cidr: netaddr.IPNetwork) -> bool:
        """Two-phase claim: pending affinity, then the block, then confirm. True if the block is ours."""
        affinity_key = keys.affinity(self.node, cidr)
        self.ds.create(affinity_key, PENDING)  # may exist already: a claim of ours that crashed
        if self.ds.create(keys.block(cidr), AllocationBlock.new(cidr, self.node).to_json()):
            mine = True
        else:
            found = self.block(cidr)
            mine = bool(found and found[0].host == self.node)
        affinity = self.ds.get(affinity_key)
        if affinity is not None:
            if mine:
                self.ds.update(affinity_key, CONFIRMED, affinity.mod_revision)
            else:
                self.ds.delete(affinity_key, affinity.mod_revision)
        if mine:
            log.info("node %s claimed block %s", self.node, cidr)
        return mine

    def _borrowable_blocks(self, version: int, usable: Sequence[IPPool]) -> list[netaddr.IPNetwork]:
        candidates = []
        for kv in self.ds.list(keys.block_prefix(version)):
            block = AllocationBlock.from_json(kv.value)
            if block.host != self.node and block.free and any(block.network in p.network for p in usable):
                candidates.append(block.network)
        # Spread borrowers over the blocks rather than piling onto the first one.
        rng = random.Random(pools.node_seed(self.node))
        rng.shuffle(candidates)
        return candidates

    # ------------------------------------------------------------ release

    def release_handle(self, handle_id: str) -> int:
        """Free every address of a handle and delete the handle; idempotent. Returns addresses freed."""
        freed = 0

        def attempt() -> bool | Conflict:
            """One block's worth; True once the handle is gone."""
            nonlocal freed
            handle_kv = self.ds.get(keys.handle(handle_id))
            if handle_kv is None:
                return True
            counts = _handle_blocks(handle_kv)
            step = self._release_in_block(handle_kv, counts, next(iter(counts))) if counts else (
                0 if self.ds.delete(handle_kv.key, handle_kv.mod_revision) else None)
            if step is None:
                return CONFLICT
            freed += step
            return len(counts) <= 1  # that write deleted the handle: nothing left to read

        while not self._retry(attempt, f"releasing handle {handle_id}"):
            pass
        return freed

    def _release_in_block(self, handle_kv: KeyValue, counts: dict[str, int], cidr_text: str) -> int | None:
        """One CAS step: free the handle's addresses in one block and drop that block from the handle.

        Returns how many addresses were freed, or None when the write lost a race."""
        handle_id = json.loads(handle_kv.value).get("handleID") or handle_kv.key.rsplit("/", 1)[1]
        cidr = netaddr.IPNetwork(cidr_text)
        rest = {k: v for k, v in counts.items() if k != cidr_text}
        found = self.block(cidr)
        expect = {handle_kv.key: handle_kv.mod_revision}
        put: dict[str, str] = {}
        delete: list[str] = []
        freed = 0
        if found:
            block, revision = found
            new_block, freed = block.release_handle(handle_id)
            expect[keys.block(cidr)] = revision
            if new_block.is_empty() and new_block.host is None:
                delete.append(keys.block(cidr))  # an unowned empty block goes back to the pool
            elif freed:
                put[keys.block(cidr)] = new_block.to_json()
        if rest:
            put[handle_kv.key] = _handle_json(handle_id, rest)
        else:
            delete.append(handle_kv.key)
        return freed if self.ds.txn(expect, put, delete) else None

    def _release_quietly(self, handle_id: str) -> None:
        try:
            self.release_handle(handle_id)
        except Exception:  # the original failure is what the user must see
            log.exception("could not release handle %s while undoing a failed assignment", handle_id)

    def release_addresses(self, releases: Iterable[ReleaseOptions]
                          ) -> tuple[list[netaddr.IPAddress], list[netaddr.IPAddress]]:
        """Free exactly these addresses (calicoctl ipam release). Per block, one transaction frees
        them and decrements (or deletes) their handles, so blocks and handles stay consistent.
        Returns (released, not released: unallocated, or no longer the allocation asked for)."""
        wanted = {r.address: r for r in releases}  # a repeated address is released once
        by_block: dict[netaddr.IPNetwork, list[ReleaseOptions]] = {}
        not_released: list[netaddr.IPAddress] = []
        for version in sorted({a.version for a in wanted}):
            block_keys = self.ds.list(keys.block_prefix(version))
            cidrs = [keys.cidr_from_segment(kv.key.rsplit("/", 1)[1]) for kv in block_keys]
            for address, option in wanted.items():
                if address.version != version:
                    continue
                cidr = next((c for c in cidrs if address in c), None)
                if cidr is None:
                    not_released.append(address)  # no block: never allocated
                else:
                    by_block.setdefault(cidr, []).append(option)
        released: list[netaddr.IPAddress] = []
        for cidr, options in by_block.items():
            done, skipped = self._release_in_one_block(cidr, options)
            released += done
            not_released += skipped
        order = list(wanted)
        return sorted(released, key=order.index), sorted(not_released, key=order.index)

    def _release_in_one_block(self, cidr: netaddr.IPNetwork, options: Sequence[ReleaseOptions]
                              ) -> tuple[list[netaddr.IPAddress], list[netaddr.IPAddress]]:
        def attempt() -> tuple[list[netaddr.IPAddress], list[netaddr.IPAddress]] | Conflict:
            found = self.block(cidr)
            if found is None:
                return [], [o.address for o in options]
            block, revision = found
            chosen = [o.address for o in options if _still_allocated(block, o)]
            skipped = [o.address for o in options if o.address not in chosen]
            if not chosen:
                return [], skipped
            freed: dict[str, int] = {}
            for address in chosen:
                handle_id = block.handle_of(block.ordinal(address))
                if handle_id is not None:
                    freed[handle_id] = freed.get(handle_id, 0) + 1
            new_block, _ = block.release_addresses(chosen)
            expect = {keys.block(cidr): revision}
            put: dict[str, str] = {}
            delete: list[str] = []
            if new_block.is_empty() and new_block.host is None:
                delete.append(keys.block(cidr))  # an unowned empty block goes back to the pool
            else:
                put[keys.block(cidr)] = new_block.to_json()
            for handle_id, count in freed.items():
                handle_kv = self.ds.get(keys.handle(handle_id))
                expect[keys.handle(handle_id)] = handle_kv.mod_revision if handle_kv else 0
                if handle_kv is None:
                    continue  # the handle record is already gone: nothing to decrement
                counts = _handle_blocks(handle_kv)
                left = counts.pop(str(cidr), 0) - count
                if left > 0:
                    counts[str(cidr)] = left
                if counts:
                    put[handle_kv.key] = _handle_json(handle_id, counts)
                else:
                    delete.append(handle_kv.key)
            if not self.ds.txn(expect, put, delete):
                return CONFLICT
            return chosen, skipped

        return self._retry(attempt, f"releasing addresses in block {cidr}")

    def release_empty_blocks(self) -> list[netaddr.IPNetwork]:
        """Give up this node's empty affine blocks (Calico's ReleaseHostAffinities). Blocks still
        holding addresses stay; returns the blocks released."""
        released = []
        for version in (4, 6):
            for affinity_kv in self.ds.list(keys.affinity_prefix(self.node, version)):
                cidr = keys.cidr_from_segment(affinity_kv.key.rsplit("/", 1)[1])
                if self.release_block_if_empty(cidr) is None:
                    released.append(cidr)
        return released

    def release_block_if_empty(self, cidr: netaddr.IPNetwork) -> str | None:
        """Delete one of this node's blocks and its affinity in one transaction, if it holds no
        address: the route for a block never outlives its ownership. None when released (or
        already gone); otherwise why the block stays."""
        affinity_key = keys.affinity(self.node, cidr)

        def attempt() -> str | Conflict | None:
            found, affinity = self.block(cidr), self.ds.get(affinity_key)
            if found is None:
                return None if affinity is None or self.ds.delete(affinity.key, affinity.mod_revision) else CONFLICT
            block, revision = found
            if block.host != self.node:
                return f"it is affine to {block.affinity or 'no node'}"
            if not block.is_empty():
                return f"it still holds {block.in_use} addresses in use"
            expect = {keys.block(cidr): revision, affinity_key: affinity.mod_revision if affinity else 0}
            if self.ds.txn(expect, delete=[keys.block(cidr)] + ([affinity_key] if affinity else [])):
                return None
            return CONFLICT

        return self._retry(attempt, f"releasing block {cidr}")

    def handles_on_node(self, prefix: str = "") -> set[str]:
        """Handles holding addresses whose allocation attributes name this node."""
        found = set()
        for version in (4, 6):
            for kv in self.ds.list(keys.block_prefix(version)):
                for _, attr in AllocationBlock.from_json(kv.value).allocated():
                    if attr.handle_id and attr.handle_id.startswith(prefix) and \
                            (attr.secondary or {}).get("node") == self.node:
                        found.add(attr.handle_id)
        return found

    # ------------------------------------------------------------ status

    def can_assign(self, version: int, requested: Sequence[str] = ()) -> bool:
        """Whether an auto-assignment of one address of `version` would succeed now (CNI STATUS)."""
        all_pools = self.pools()
        usable = pools.usable_pools(all_pools, version, self.node, self.node_labels(all_pools), requested)
        config = self.config()
        affine = self._affine_blocks(version, usable)
        blocks = {kv.key: AllocationBlock.from_json(kv.value) for kv in self.ds.list(keys.block_prefix(version))}
        if any(blocks.get(keys.block(c)) and blocks[keys.block(c)].free for c in affine):
            return True
        at_limit = bool(config.maxBlocksPerHost) and len(affine) >= config.maxBlocksPerHost
        if config.autoAllocateBlocks and not at_limit:
            for pool in usable:
                if any(keys.block(c) not in blocks for c in pools.candidate_blocks(pool, self.node)):
                    return True
        if not config.strictAffinity:
            return any(b.free and any(b.network in p.network for p in usable) for b in blocks.values())
        return False

    # ------------------------------------------------------------ retry

    def _retry(self, attempt: Callable[[], T | Conflict], what: str) -> T:
        return retry_on_conflict(attempt, what, self.max_attempts)

