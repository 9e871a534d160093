"""AllocationBlock: the pure Calico allocation block (no I/O, every change returns a new block)."""

from __future__ import annotations

import json

import netaddr
import pytest

from cni_calico.allocation.block import AddressInUse, AllocationBlock, Attribute

IP = netaddr.IPAddress
NET = netaddr.IPNetwork

V4 = NET("10.65.1.0/26")
V6 = NET("fd00:10:65::/122")
ATTRS = {"node": "node-a", "pod": "nginx", "namespace": "default"}


def snapshot(block: AllocationBlock) -> dict:
    """A deep, independent view of a block, to prove it was not mutated."""
    return json.loads(block.to_json())


def assert_consistent(block: AllocationBlock) -> None:
    """Every ordinal is either allocated or on the free list, exactly once; attributes are all referenced."""
    size = block.network.size
    assert len(block.allocations) == size
    free = block.unallocated
    assert len(free) == len(set(free)), "an ordinal is on the free list twice"
    allocated = {o for o, a in enumerate(block.allocations) if a is not None}
    assert allocated.isdisjoint(free)
    assert allocated | set(free) == set(range(size))
    used = {a for a in block.allocations if a is not None}
    assert used == set(range(len(block.attributes))), "an attribute is unreferenced or missing"


# ---------------------------------------------------------------- new()

@pytest.mark.parametrize("cidr, node, size, affinity, host", [
    (V4, "node-a", 64, "host:node-a", "node-a"),
    (NET("10.65.1.5/26"), "node-a", 64, "host:node-a", "node-a"),  # host bits are dropped from the CIDR
    (NET("10.65.0.0/24"), None, 256, None, None),
    (NET("10.65.0.0/32"), "n", 1, "host:n", "n"),
    (V6, "node-b", 64, "host:node-b", "node-b"),
    (NET("fd00::/120"), "node-b", 256, "host:node-b", "node-b"),
])
def test_new_block_is_empty_and_affine(cidr, node, size, affinity, host):
    block = AllocationBlock.new(cidr, node)
    assert block.cidr == str(cidr.cidr)
    assert block.affinity == affinity
    assert block.host == host
    assert block.allocations == [None] * size
    assert block.unallocated == list(range(size))
    assert block.attributes == []
    assert block.free == size
    assert block.in_use == 0
    assert block.is_empty()
    assert block.strictAffinity is False
    assert block.deleted is False
    assert_consistent(block)


@pytest.mark.parametrize("affinity, host", [
    ("host:node-a", "node-a"),
    ("host:", ""),
    ("virtual:node-a", None),  # not a host affinity
    (None, None),
])
def test_host_reads_only_host_affinities(affinity, host):
    block = AllocationBlock.new(V4, None).model_copy(update={"affinity": affinity})
    assert block.host == host


# ---------------------------------------------------------------- assign()

@pytest.mark.parametrize("cidr, count, expected", [
    (V4, 1, ["10.65.1.0"]),
    (V4, 3, ["10.65.1.0", "10.65.1.1", "10.65.1.2"]),
    (NET("10.65.1.0/30"), 4, ["10.65.1.0", "10.65.1.1", "10.65.1.2", "10.65.1.3"]),
    (NET("10.65.1.0/30"), 10, ["10.65.1.0", "10.65.1.1", "10.65.1.2", "10.65.1.3"]),  # only what is free
    (V6, 2, ["fd00:10:65::", "fd00:10:65::1"]),
])
def test_assign_takes_count_from_the_head_of_the_free_list(cidr, count, expected):
    block = AllocationBlock.new(cidr, "node-a")
    new, addrs = block.assign(count, "net.c1", ATTRS)
    assert [str(a) for a in addrs] == expected
    assert new.in_use == len(expected)
    assert new.free == cidr.size - len(expected)
    assert new.unallocated == list(range(len(expected), cidr.size))
    assert [str(a) for a in new.addresses_of("net.c1")] == expected
    assert_consistent(new)


def test_assign_follows_the_order_of_the_free_list():
    block = AllocationBlock.new(NET("10.0.0.0/29"), "n").model_copy(update={"unallocated": [5, 2, 7, 0, 1, 3, 4, 6]})
    new, addrs = block.assign(3, "h", {})
    assert addrs == [IP("10.0.0.5"), IP("10.0.0.2"), IP("10.0.0.7")]
    assert new.unallocated == [0, 1, 3, 4, 6]


@pytest.mark.parametrize("count", [0, -1, -5])
def test_assign_nothing_for_non_positive_counts(count):
    block = AllocationBlock.new(V4, "n")
    before = snapshot(block)
    new, addrs = block.assign(count, "h", {})
    assert addrs == []
    assert snapshot(new) == before


def test_assign_when_full_returns_no_addresses_and_the_same_content():
    block, addrs = AllocationBlock.new(NET("10.0.0.0/30"), "n").assign(4, "h1", {})
    assert len(addrs) == 4 and block.free == 0
    before = snapshot(block)
    again, more = block.assign(1, "h2", {})
    assert more == []
    assert snapshot(again) == before
    assert again.addresses_of("h2") == []


def test_assign_records_attributes_and_sequence_numbers():
    block = AllocationBlock.new(V4, "n")
    new, _addrs = block.assign(2, "net.c1", ATTRS)
    assert new.attributes == [Attribute(handle_id="net.c1", secondary=ATTRS)]
    assert new.allocations[:3] == [0, 0, None]
    assert new.sequenceNumber == block.sequenceNumber + 1
    assert new.sequenceNumberForAllocation == {"0": new.sequenceNumber, "1": new.sequenceNumber}
    assert [(str(a), attr.handle_id) for a, attr in new.allocated()] == [("10.65.1.0", "net.c1"),
                                                                         ("10.65.1.1", "net.c1")]


def test_assign_without_attributes_stores_null_secondary():
    new, _ = AllocationBlock.new(V4, "n").assign(1, "h", {})
    assert new.attributes == [Attribute(handle_id="h", secondary=None)]


# ---------------------------------------------------------------- assign_address()

@pytest.mark.parametrize("cidr, address, ordinal", [
    (V4, "10.65.1.0", 0),
    (V4, "10.65.1.17", 17),
    (V4, "10.65.1.63", 63),
    (V6, "fd00:10:65::3f", 63),
    (V6, "fd00:10:65::a", 10),
])
def test_assign_address_takes_exactly_that_address(cidr, address, ordinal):
    block = AllocationBlock.new(cidr, "n")
    new = block.assign_address(IP(address), "h", ATTRS)
    assert new.allocations[ordinal] == 0
    assert ordinal not in new.unallocated
    assert new.unallocated == [o for o in range(cidr.size) if o != ordinal]
    assert new.addresses_of("h") == [IP(address)]
    assert new.handle_of(ordinal) == "h"
    assert new.sequenceNumberForAllocation == {str(ordinal): new.sequenceNumber}
    assert_consistent(new)


def test_assign_address_that_is_taken_raises_address_in_use():
    block = AllocationBlock.new(V4, "n").assign_address(IP("10.65.1.9"), "first", {})
    before = snapshot(block)
    with pytest.raises(AddressInUse, match=r"10\.65\.1\.9.*first"):
        block.assign_address(IP("10.65.1.9"), "second", {})
    assert snapshot(block) == before


@pytest.mark.parametrize("cidr, address", [
    (V4, "10.65.1.64"),
    (V4, "10.65.0.255"),
    (V4, "192.168.0.1"),
    (V4, "fd00:10:65::1"),
    (V6, "fd00:10:65::40"),
    (V6, "10.65.1.1"),
])
def test_address_outside_the_block_is_a_value_error(cidr, address):
    block = AllocationBlock.new(cidr, "n")
    with pytest.raises(ValueError, match="is not in block"):
        block.assign_address(IP(address), "h", {})
    with pytest.raises(ValueError, match="is not in block"):
        block.ordinal(IP(address))
    with pytest.raises(ValueError, match="is not in block"):
        block.release_addresses([IP(address)])


# ---------------------------------------------------------------- release

def test_release_handle_puts_ordinals_at_the_tail_of_the_free_list():
    block, _ = AllocationBlock.new(NET("10.0.0.0/29"), "n").assign(2, "a", {})  # ordinals 0, 1
    block, _ = block.assign(1, "b", {})                                         # ordinal 2
    assert block.unallocated == [3, 4, 5, 6, 7]
    released, count = block.release_handle("a")
    assert count == 2
    assert released.unallocated == [3, 4, 5, 6, 7, 0, 1]
    assert released.addresses_of("a") == []
    assert released.addresses_of("b") == [IP("10.0.0.2")]
    assert_consistent(released)
    # delayed reuse: the next allocation takes a never-used address, not the one just freed
    _, addrs = released.assign(1, "c", {})
    assert addrs == [IP("10.0.0.3")]


def test_freed_addresses_come_back_only_after_the_rest_of_the_free_list():
    block, _ = AllocationBlock.new(NET("10.0.0.0/30"), "n").assign(1, "a", {})
    block, _ = block.release_handle("a")
    assert block.unallocated == [1, 2, 3, 0]
    block, addrs = block.assign(4, "b", {})
    assert addrs == [IP("10.0.0.1"), IP("10.0.0.2"), IP("10.0.0.3"), IP("10.0.0.0")]


@pytest.mark.parametrize("handle", ["unknown", "", "a.b"])
def test_release_of_an_unknown_handle_frees_nothing(handle):
    block, _ = AllocationBlock.new(V4, "n").assign(2, "net.c1", {})
    before = snapshot(block)
    released, count = block.release_handle(handle)
    assert count == 0
    assert snapshot(released) == before


def test_releasing_twice_is_harmless():
    block, _ = AllocationBlock.new(V4, "n").assign(2, "h", {})
    once, first = block.release_handle("h")
    twice, second = once.release_handle("h")
    assert (first, second) == (2, 0)
    assert snapshot(twice) == snapshot(once)
    assert twice.is_empty()
    assert_consistent(twice)


def test_release_addresses_frees_only_allocated_ones():
    block, _ = AllocationBlock.new(V4, "n").assign(3, "h", {})
    released, count = block.release_addresses([IP("10.65.1.1"), IP("10.65.1.40")])
    assert count == 1
    assert released.addresses_of("h") == [IP("10.65.1.0"), IP("10.65.1.2")]
    assert released.unallocated[-1] == 1
    assert_consistent(released)


def test_release_addresses_counts_a_repeated_address_once():
    block, _ = AllocationBlock.new(V4, "n").assign(2, "h", {})
    released, count = block.release_addresses([IP("10.65.1.0"), IP("10.65.1.0")])
    assert count == 1
    assert released.unallocated.count(0) == 1
    assert_consistent(released)


def test_release_bumps_the_sequence_number_and_forgets_per_allocation_numbers():
    block, _ = AllocationBlock.new(V4, "n").assign(2, "h", {})
    released, _ = block.release_handle("h")
    assert released.sequenceNumber == block.sequenceNumber + 1
    assert released.sequenceNumberForAllocation == {}


# ---------------------------------------------------------------- attributes

@pytest.mark.parametrize("first, second, n_attributes", [
    (("h", {"pod": "a"}), ("h", {"pod": "a"}), 1),    # same handle and attrs: shared
    (("h", {"pod": "a"}), ("h", {"pod": "b"}), 2),    # same handle, other attrs
    (("h1", {"pod": "a"}), ("h2", {"pod": "a"}), 2),  # other handle
    (("h", {}), ("h", {}), 1),
])
def test_attributes_are_deduplicated(first, second, n_attributes):
    block, _ = AllocationBlock.new(V4, "n").assign(1, *first)
    block, _ = block.assign(1, *second)
    assert len(block.attributes) == n_attributes
    assert block.allocations[:2] == [0, n_attributes - 1]
    assert_consistent(block)


def test_release_compacts_and_renumbers_attributes():
    block = AllocationBlock.new(NET("10.0.0.0/29"), "n")
    block, _ = block.assign(1, "a", {"pod": "a"})  # attribute 0, ordinal 0
    block, _ = block.assign(2, "b", {"pod": "b"})  # attribute 1, ordinals 1, 2
    block, _ = block.assign(1, "c", {"pod": "c"})  # attribute 2, ordinal 3
    assert block.allocations[:4] == [0, 1, 1, 2]
    released, count = block.release_handle("a")
    assert count == 1
    assert [a.handle_id for a in released.attributes] == ["b", "c"]
    assert released.allocations[:4] == [None, 0, 0, 1]
    assert released.handle_of(1) == "b" and released.handle_of(3) == "c"
    assert released.addresses_of("c") == [IP("10.0.0.3")]
    assert released.attributes[1].secondary == {"pod": "c"}
    assert_consistent(released)
    # a new handle after compaction gets the next free attribute index
    again, _ = released.assign(1, "d", {})
    assert [a.handle_id for a in again.attributes] == ["b", "c", "d"]
    assert again.allocations[4] == 2


def test_releasing_the_last_handle_leaves_no_attributes():
    block, _ = AllocationBlock.new(V4, "n").assign(5, "h", ATTRS)
    released, _ = block.release_handle("h")
    assert released.attributes == []
    assert released.is_empty()


# ---------------------------------------------------------------- queries

def test_addresses_of_lists_a_handles_addresses_in_ordinal_order():
    block = AllocationBlock.new(V4, "n")
    block = block.assign_address(IP("10.65.1.30"), "x", {})
    block, _ = block.assign(2, "y", {})
    block = block.assign_address(IP("10.65.1.5"), "x", {})
    assert block.addresses_of("x") == [IP("10.65.1.5"), IP("10.65.1.30")]
    assert block.addresses_of("y") == [IP("10.65.1.0"), IP("10.65.1.1")]
    assert block.addresses_of("z") == []


@pytest.mark.parametrize("cidr, ordinal, address", [
    (V4, 0, "10.65.1.0"),
    (V4, 63, "10.65.1.63"),
    (NET("10.65.0.0/24"), 200, "10.65.0.200"),
    (V6, 0, "fd00:10:65::"),
    (V6, 63, "fd00:10:65::3f"),
])
def test_address_and_ordinal_are_inverse(cidr, ordinal, address):
    block = AllocationBlock.new(cidr, "n")
    assert block.address(ordinal) == IP(address)
    assert block.address(ordinal).version == cidr.version
    assert block.ordinal(IP(address)) == ordinal


# ---------------------------------------------------------------- JSON

def test_json_uses_calicos_field_names():
    block, _ = AllocationBlock.new(NET("10.65.1.0/30"), "node-a").assign(1, "net.c1", {"node": "node-a"})
    data = json.loads(block.to_json())
    assert data["cidr"] == "10.65.1.0/30"
    assert data["affinity"] == "host:node-a"
    assert data["strictAffinity"] is False
    assert data["allocations"] == [0, None, None, None]
    assert data["unallocated"] == [1, 2, 3]
    assert data["attributes"] == [{"handle_id": "net.c1", "secondary": {"node": "node-a"}}]
    assert data["deleted"] is False


CALICO_BLOCK = {  # a block as Calico v3 writes it, with a field we do not model
    "cidr": "10.65.1.192/30",
    "affinity": "host:node-b",
    "strictAffinity": True,
    "allocations": [0, None, 1, None],
    "unallocated": [3, 1],
    "attributes": [
        {"handle_id": "k8s-pod-network.abc", "secondary": {"node": "node-b", "pod": "nginx", "namespace": "default"}},
        {"handle_id": "ipip-tunnel-addr-node-b", "secondary": None},
    ],
    "deleted": False,
    "sequenceNumber": 7,
    "sequenceNumberForAllocation": {"0": 5, "2": 6},
    "someFutureField": {"kept": True},
}


def test_reads_a_calico_block_and_writes_it_back_unchanged():
    block = AllocationBlock.from_json(json.dumps(CALICO_BLOCK))
    assert block.host == "node-b"
    assert block.strictAffinity is True
    assert block.addresses_of("k8s-pod-network.abc") == [IP("10.65.1.192")]
    assert block.addresses_of("ipip-tunnel-addr-node-b") == [IP("10.65.1.194")]
    assert block.attributes[0].secondary == {"node": "node-b", "pod": "nginx", "namespace": "default"}
    assert json.loads(block.to_json()) == CALICO_BLOCK


@pytest.mark.parametrize("cidr", [V4, V6, NET("10.0.0.0/30")])
def test_json_round_trip_after_changes(cidr):
    block, _ = AllocationBlock.new(cidr, "node-a").assign(3, "a", ATTRS)
    block, _ = block.assign(1, "b", {})
    block, _ = block.release_handle("a")
    block = block.model_copy(update={"deleted": True, "strictAffinity": True})
    again = AllocationBlock.from_json(block.to_json())
    assert again == block
    assert again.to_json() == block.to_json()


# ---------------------------------------------------------------- immutability

OPERATIONS = [
    ("assign", lambda b: b.assign(2, "new", {"pod": "p"})),
    ("assign existing handle", lambda b: b.assign(1, "h", ATTRS)),
    ("assign_address", lambda b: b.assign_address(b.address(40), "new", {})),
    ("assign_address taken", lambda b: b.assign_address(b.address(0), "new", {})),
    ("release_handle", lambda b: b.release_handle("h")),
    ("release_handle unknown", lambda b: b.release_handle("nope")),
    ("release_addresses", lambda b: b.release_addresses([b.address(1)])),
    ("queries", lambda b: (b.addresses_of("h"), list(b.allocated()), b.free, b.in_use)),
]


@pytest.mark.parametrize("cidr", [V4, V6])
@pytest.mark.parametrize("name, operation", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_the_original_block_is_never_mutated(cidr, name, operation):
    block, _ = AllocationBlock.new(cidr, "node-a").assign(3, "h", ATTRS)
    before = snapshot(block)
    try:
        result = operation(block)
    except AddressInUse:
        result = None
    assert snapshot(block) == before
    if name in ("assign", "assign_address", "release_handle", "release_addresses"):
        changed = result[0] if isinstance(result, tuple) else result
        assert changed is not block
        assert snapshot(changed) != before


# ---------------------------------------------------------------- IPv6 /122

def test_ipv6_122_block_lifecycle():
    block = AllocationBlock.new(NET("fd00:10:65:0:1::40/122"), "node-6")
    assert block.cidr == "fd00:10:65:0:1::40/122"
    assert block.free == 64
    block, addrs = block.assign(64, "all", {})
    assert addrs[0] == IP("fd00:10:65:0:1::40")
    assert addrs[-1] == IP("fd00:10:65:0:1::7f")
    assert len(set(addrs)) == 64
    assert block.assign(1, "more", {})[1] == []
    block, count = block.release_addresses([IP("fd00:10:65:0:1::41")])
    assert count == 1
    block, again = block.assign(1, "one", {})
    assert again == [IP("fd00:10:65:0:1::41")]
    assert AllocationBlock.from_json(block.to_json()) == block
    assert_consistent(block)
