"""A pure allocation block (Calico's AllocationBlock): no I/O, every operation returns a new block.

Layout as Calico stores it: `allocations[ordinal]` is an index into `attributes` (or
null when free); `unallocated` is the free list, consumed from the head; released
ordinals go to its tail so an address is not handed out again straight away.
"""

from __future__ import annotations

import json
from typing import Iterable

import netaddr
from pydantic import BaseModel, ConfigDict, Field

AFFINITY_HOST = "host:"


class AddressInUse(Exception):
    """The requested ordinal is already allocated."""


class Attribute(BaseModel):
    handle_id: str | None = None
    secondary: dict[str, str] | None = None


class AllocationBlock(BaseModel):
    model_config = ConfigDict(extra="allow")

    cidr: str
    affinity: str | None = None
    strictAffinity: bool = False
    allocations: list[int | None]
    unallocated: list[int]
    attributes: list[Attribute] = Field(default_factory=list)
    deleted: bool = False
    sequenceNumber: int = 0
    sequenceNumberForAllocation: dict[str, int] = Field(default_factory=dict)

    # ------------------------------------------------------------ construction

    @classmethod
    def new(cls, cidr: netaddr.IPNetwork, node: str | None) -> AllocationBlock:
        size = cidr.size
        return cls(
            cidr=str(cidr.cidr),
            affinity=f"{AFFINITY_HOST}{node}" if node else None,
            allocations=[None] * size,
            unallocated=list(range(size)),
        )

    @classmethod
    def from_json(cls, text: str) -> AllocationBlock:
        return cls.model_validate_json(text)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"))

    # ------------------------------------------------------------ queries

    @property
    def network(self) -> netaddr.IPNetwork:
        return netaddr.IPNetwork(self.cidr)

    @property
    def host(self) -> str | None:
        """The node this block is affine to, if any."""
        if self.affinity and self.affinity.startswith(AFFINITY_HOST):
            return self.affinity[len(AFFINITY_HOST):]
        return None

    @property
    def free(self) -> int:
        return len(self.unallocated)

    @property
    def in_use(self) -> int:
        return sum(1 for a in self.allocations if a is not None)

    def is_empty(self) -> bool:
        return self.in_use == 0

    def address(self, ordinal: int) -> netaddr.IPAddress:
        return netaddr.IPAddress(self.network.first + ordinal, self.network.version)

    def ordinal(self, address: netaddr.IPAddress) -> int:
        if address not in self.network:
            raise ValueError(f"{address} is not in block {self.cidr}")
        return int(address) - self.network.first

    def handle_of(self, ordinal: int) -> str | None:
        index = self.allocations[ordinal]
        return None if index is None else self.attributes[index].handle_id

    def addresses_of(self, handle_id: str) -> list[netaddr.IPAddress]:
        return [self.address(o) for o in range(len(self.allocations)) if self.handle_of(o) == handle_id]

    def allocated(self) -> Iterable[tuple[netaddr.IPAddress, Attribute]]:
        for ordinal, index in enumerate(self.allocations):
            if index is not None:
                yield self.address(ordinal), self.attributes[index]

    # ------------------------------------------------------------ changes (each returns a new block)

    def assign(self, count: int, handle_id: str, attrs: dict[str, str]
               ) -> tuple[AllocationBlock, list[netaddr.IPAddress]]:
        """Take up to `count` addresses from the head of the free list."""
        taken = self.unallocated[:max(count, 0)]  # a negative slice bound would take almost everything
        if not taken:
            return self, []
        block = self._private_copy()
        index = block._attribute_index(handle_id, attrs)
        for ordinal in taken:
            block.allocations[ordinal] = index
        block.unallocated = block.unallocated[len(taken):]
        block._bump(taken)
        return block, [self.address(o) for o in taken]

    def assign_address(self, address: netaddr.IPAddress, handle_id: str, attrs: dict[str, str]) -> AllocationBlock:
        """Take one given address; AddressInUse if it is allocated."""
        ordinal = self.ordinal(address)
        if self.allocations[ordinal] is not None:
            raise AddressInUse(f"{address} is already allocated (handle {self.handle_of(ordinal)})")
        block = self._private_copy()
        block.allocations[ordinal] = block._attribute_index(handle_id, attrs)
        block.unallocated.remove(ordinal)
        block._bump([ordinal])
        return block

    def release_handle(self, handle_id: str) -> tuple[AllocationBlock, int]:
        """Free every address held by `handle_id`; returns the new block and how many were freed."""
        ordinals = [o for o in range(len(self.allocations)) if self.handle_of(o) == handle_id]
        return self._release(ordinals), len(ordinals)

    def release_addresses(self, addresses: Iterable[netaddr.IPAddress]) -> tuple[AllocationBlock, int]:
        unique = dict.fromkeys(self.ordinal(a) for a in addresses)  # a repeated address is freed once
        ordinals = [o for o in unique if self.allocations[o] is not None]
        return self._release(ordinals), len(ordinals)

    def _release(self, ordinals: list[int]) -> AllocationBlock:
        if not ordinals:
            return self
        block = self._private_copy()
        for ordinal in ordinals:
            block.allocations[ordinal] = None
            block.sequenceNumberForAllocation.pop(str(ordinal), None)
        block.unallocated.extend(ordinals)  # delayed reuse: freed addresses queue at the tail
        block._compact_attributes()
        block.sequenceNumber += 1
        return block

    # ------------------------------------------------------------ internals (on a private copy only)

    def _private_copy(self) -> AllocationBlock:
        """A copy whose containers the change methods may mutate. Attribute values are shared:
        nothing changes one in place, so a deep copy would only walk every element again."""
        block = self.model_copy()
        block.allocations = list(self.allocations)
        block.unallocated = list(self.unallocated)
        block.attributes = list(self.attributes)
        block.sequenceNumberForAllocation = dict(self.sequenceNumberForAllocation)
        return block

    def _attribute_index(self, handle_id: str, attrs: dict[str, str]) -> int:
        wanted = Attribute(handle_id=handle_id, secondary=dict(attrs) or None)
        for index, existing in enumerate(self.attributes):
            if existing == wanted:
                return index
        self.attributes.append(wanted)
        return len(self.attributes) - 1

    def _compact_attributes(self) -> None:
        """Drop attributes no allocation refers to and renumber the rest."""
        used = sorted({i for i in self.allocations if i is not None})
        renumber = {old: new for new, old in enumerate(used)}
        self.attributes = [self.attributes[i] for i in used]
        self.allocations = [None if i is None else renumber[i] for i in self.allocations]

    def _bump(self, ordinals: list[int]) -> None:
        self.sequenceNumber += 1
        for ordinal in ordinals:
            self.sequenceNumberForAllocation[str(ordinal)] = self.sequenceNumber
