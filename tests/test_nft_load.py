"""The rendered nftables scripts in a real kernel, inside private network namespaces only.

Every golden script passes `nft -c` and loads; an incremental update A -> B leaves exactly what
loading B from scratch leaves; deleting the table leaves the namespace's ruleset empty. The
machine's own namespace is never touched: each test creates `ccnft<pid>-<random>` and deletes it
in the fixture's teardown, whatever the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import uuid
from typing import Any, Iterator

import pytest

from cni_calico.lab.hosts import NETNS_DIR
from cni_calico.node.policy.apply import (
    NftCommand,
    NftDataplane,
    NftError,
    NftLibrary,
    default_runner,
)
from cni_calico.node.policy.model import PolicyState
from cni_calico.node.policy.render import render
from cni_calico.node.policy.ruleset import full_script, update_script
from tests.test_nft_render import (
    CASES,
    DB,
    NAMESPACES,
    POOL,
    POOL6,
    PROD_DB,
    golden_path,
    np,
    state,
    wep,
)

pytestmark = pytest.mark.root


class Netns:
    """A private network namespace to run nft in."""

    def __init__(self, name: str) -> None:
        self.name = name

    def nft(self, *args: str, script: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "netns", "exec", self.name, "nft", *args], input=script,
                              capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"nft {' '.join(args)} failed: {proc.stderr.strip()}\n--- script ---\n{script or ''}")
        return proc

    def load(self, script: str) -> None:
        self.nft("-c", "-f", "-", script=script)  # the check alone must accept it too
        self.nft("-f", "-", script=script)

    def raw_listing(self) -> list[dict[str, Any]]:
        return json.loads(self.nft("-j", "list", "table", "inet", "calico").stdout)["nftables"]

    def listing(self) -> dict[str, Any]:
        return normalized(self.raw_listing())

    def rule_handles(self) -> list[int]:
        return sorted(item["rule"]["handle"] for item in self.raw_listing() if "rule" in item)


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.fail("the nftables load tests need root (network namespaces)", pytrace=False)
    if not shutil.which("nft"):
        pytest.fail("nft (Debian package nftables) is not installed", pytrace=False)
    name = f"ccnft{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def normalized(listing: list[dict[str, Any]]) -> dict[str, Any]:
    """The table as the kernel holds it, minus what depends on history: handles, the order
    objects were created in, the order of hash-set elements."""
    out: dict[str, Any] = {"set": {}, "map": {}, "chain": {}, "rule": {}}
    for item in listing:
        (kind, body), = item.items()
        if kind not in out:
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind == "rule":
            out["rule"].setdefault(body["chain"], []).append(body)
            continue
        if "elem" in body:
            body["elem"] = sorted(body["elem"], key=lambda e: json.dumps(e, sort_keys=True))
        out[kind][body["name"]] = body
    return out


# ---------------------------------------------------------------- golden scripts

@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_script_checks_and_loads(netns: Netns, case: str) -> None:
    script = golden_path(case).read_text()
    netns.load(script)
    first = netns.listing()
    assert first["chain"].keys() >= {"forward", "input", "postrouting", "from-wl-dispatch", "to-wl-dispatch"}
    netns.load(script)  # again, over the existing table: replaced, not merged
    assert netns.listing() == first


def test_deleting_the_table_leaves_nothing(netns: Netns) -> None:
    netns.load(full_script(render(CASES["selector_namespace_selector"])))
    netns.nft("delete", "table", "inet", "calico")
    assert netns.nft("list", "ruleset").stdout.strip() == ""


# ---------------------------------------------------------------- incremental updates

def _with(st: PolicyState, **changes: Any) -> PolicyState:
    return dataclasses.replace(st, **changes)


def _pairs() -> dict[str, tuple[PolicyState, PolicyState]]:
    base = CASES["selector_namespace_selector"]
    two = CASES["two_signatures"]
    order = CASES["pass_and_order"]
    # the evaluation order was first, a-deny, b-pass, z-unordered: reverse it
    reordered = tuple(dataclasses.replace(p, spec=p.spec.model_copy(update={"order": i + 1}))
                      for i, p in enumerate(order.policies))  # z-unordered, b-pass, a-deny, first
    new_local = wep("api", "10.65.0.40", labels={"app": "api"}, ip6="fd00:65::40")
    moved_db = dataclasses.replace(PROD_DB, labels={**PROD_DB.labels, "app": "cache"})
    return {
        "policy_added": (two, _with(two, policies=(
            *two.policies,
            np("default", "db-in", order=5, selector="app == 'db'",
               ingress=[{"action": "Deny", "protocol": "UDP", "source": {"selector": "app == 'web'"}}])))),
        "policy_removed": (base, _with(base, policies=base.policies[:1])),
        "policies_reordered": (order, _with(order, policies=reordered)),
        "policy_rules_changed": (two, _with(two, policies=(
            np("default", "web-in", order=10, selector="app == 'web'",
               ingress=[{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}]),
            two.policies[1]))),
        "endpoint_added": (base, _with(base, endpoints=(*base.endpoints, new_local))),
        "endpoint_removed": (base, _with(base, endpoints=tuple(e for e in base.endpoints if e != DB))),
        "selector_membership_changed": (base, _with(base, endpoints=tuple(
            moved_db if e == PROD_DB else e for e in base.endpoints))),
        "namespace_labels_changed": (base, _with(base, namespaces={**NAMESPACES, "other": {"team": "web"}})),
        "nat_toggled_on": (CASES["profile_only"], _with(CASES["profile_only"], nat_pools=(POOL,))),
        "nat_toggled_off": (CASES["nat_outgoing"], _with(CASES["nat_outgoing"], nat_pools=(POOL6,))),
        "endpoint_to_host_changed": (two, _with(two, endpoint_to_host="Drop")),
        "everything_to_empty": (base, state((), profile_specs={}, all_pools=())),
        "empty_to_everything": (state((), profile_specs={}, all_pools=()), base),
        "unrelated_states": (CASES["icmp"], CASES["nets_not_nets"]),
    }


PAIRS = _pairs()


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_update_equals_full_load(netns: Netns, pair: str) -> None:
    a, b = (render(s) for s in PAIRS[pair])
    netns.load(full_script(b))
    expected = netns.listing()
    netns.load(full_script(a))
    update = update_script(a, b)
    assert update and "delete table" not in update  # incremental, not a replacement
    netns.load(update)
    assert netns.listing() == expected


def test_update_touching_only_set_elements_keeps_rule_handles(netns: Netns) -> None:
    """A membership change must not flush or re-add any rule (rule handles survive)."""
    base = CASES["selector_namespace_selector"]
    newcomer = wep("db-9", "10.65.9.20", labels={"app": "db"}, local=False)
    a, b = render(base), render(_with(base, endpoints=(*base.endpoints, newcomer)))
    netns.load(full_script(a))
    before = netns.rule_handles()
    netns.load(update_script(a, b))
    assert netns.rule_handles() == before
    assert "10.65.9.20" in netns.nft("list", "table", "inet", "calico").stdout


def test_unused_objects_are_gone_after_update(netns: Netns) -> None:
    base = CASES["selector_namespace_selector"]
    a, b = render(base), render(_with(base, policies=()))
    netns.load(full_script(a))
    netns.load(update_script(a, b))
    listing = netns.listing()
    assert not [n for n in listing["set"] if n.startswith("sel-")]
    assert not [n for n in listing["chain"] if n.startswith(("pi-", "po-"))]
    assert sorted(listing["chain"]) == sorted(b.chains)



# ------------------------------------------------------------------ the applier the agent uses

RUNNERS = ["library", "program"]


def _runner(netns: Netns, kind: str) -> Any:
    """How the agent applies (nftables' library in-process), or the nft program it falls back to."""
    if kind == "library":
        return NftLibrary(f"{NETNS_DIR}/{netns.name}")
    return NftCommand(["ip", "netns", "exec", netns.name, "nft"])


@pytest.mark.parametrize("kind", RUNNERS)
def test_applier_replaces_then_updates_then_does_nothing(netns: Netns, kind: str) -> None:
    dataplane = NftDataplane(_runner(netns, kind))
    a, b = PAIRS["policy_added"]
    assert dataplane.apply(render(a)) == "full"
    assert netns.listing() == _loaded(netns, render(a))
    assert dataplane.apply(render(a)) == "unchanged"
    assert dataplane.apply(render(b)) == "update"
    assert netns.listing() == _loaded(netns, render(b))


@pytest.mark.parametrize("kind", RUNNERS)
def test_applier_replaces_the_table_when_the_kernel_drifted(netns: Netns, kind: str) -> None:
    dataplane = NftDataplane(_runner(netns, kind))
    a, b = PAIRS["endpoint_added"]
    dataplane.apply(render(a))
    netns.nft("delete", "table", "inet", "calico")  # by hand, behind the agent's back
    assert dataplane.apply(render(b)) == "full"  # the increment was refused: whole table instead
    assert netns.listing() == _loaded(netns, render(b))


@pytest.mark.parametrize("kind", RUNNERS)
def test_applier_remove_leaves_nothing(netns: Netns, kind: str) -> None:
    dataplane = NftDataplane(_runner(netns, kind))
    dataplane.apply(render(CASES["two_signatures"]))
    dataplane.remove()
    assert netns.nft("list", "ruleset").stdout.strip() == ""
    dataplane.remove()  # already gone: fine


def test_a_refusal_keeps_nothing_half_done(netns: Netns) -> None:
    refusing = NftDataplane(NftCommand(["ip", "netns", "exec", netns.name, "false"]))
    with pytest.raises(NftError):
        refusing.apply(render(CASES["two_signatures"]))
    assert refusing.current is None  # nothing is believed applied
    assert netns.nft("list", "ruleset").stdout.strip() == ""


def test_the_library_refuses_what_the_program_refuses(netns: Netns) -> None:
    bad = "add table inet calico\nadd element inet calico nosuchset { 10.0.0.1 }\n"
    with pytest.raises(NftError) as by_library:
        NftLibrary(f"{NETNS_DIR}/{netns.name}").run(bad)
    with pytest.raises(NftError) as by_program:
        NftCommand(["ip", "netns", "exec", netns.name, "nft"]).run(bad)
    for refused in (by_library.value, by_program.value):  # (the library's context line differs)
        assert str(refused).split(";")[0].endswith("Error: No such file or directory")
    assert netns.nft("list", "ruleset").stdout.strip() == ""  # one transaction: the table was not made


def test_the_library_acts_in_its_namespace_only(netns: Netns) -> None:
    table = f"cclib{uuid.uuid4().hex[:8]}"
    own = os.readlink("/proc/thread-self/ns/net")
    library = NftLibrary(f"{NETNS_DIR}/{netns.name}")
    library.run(f"add table inet {table}\n")
    library.run(f"add chain inet {table} c\n")  # and again: the context stays in that namespace
    assert os.readlink("/proc/thread-self/ns/net") == own  # the thread came back
    assert f"table inet {table}" in netns.nft("list", "tables").stdout
    here = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30).stdout
    assert table not in here  # read-only look at this namespace: nothing arrived
    library.close()


def test_the_agent_uses_the_library_unless_told_to_run_a_program() -> None:
    assert isinstance(default_runner(""), NftLibrary)
    program = default_runner("/usr/sbin/nft")
    assert isinstance(program, NftCommand) and program.command == ["/usr/sbin/nft"]


def _loaded(netns: Netns, ruleset: Any) -> dict[str, Any]:
    """What the kernel lists after loading `ruleset` from scratch (restoring what was there)."""
    current = netns.nft("list", "table", "inet", "calico").stdout
    netns.load(full_script(ruleset))
    expected = netns.listing()
    netns.load(f"add table inet calico\ndelete table inet calico\n{current}")
    return expected
