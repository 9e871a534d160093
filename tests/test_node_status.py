"""`calicoctl node status` rendering: peers out of `show protocols` rows, Calico's exact table layout."""

from __future__ import annotations

from cni_calico.node.routing.birdctl import Protocol, parse_protocol
from cni_calico.node.routing.status import (
    PeerStatus,
    format_status,
    peers_from_protocols,
)


def bgp(name: str, state: str = "up", since: str = "12:35:53.123", info: str = "Established") -> Protocol:
    return Protocol(name=name, proto="BGP", table="---", state=state, since=since, info=info)


def test_the_three_peer_types_and_their_addresses() -> None:
    peers = peers_from_protocols([
        bgp("Mesh_192_0_2_2"),
        bgp("Global_203_0_113_7", state="start", info="Active Socket: Connection refused"),
        bgp("Node_198_51_100_1", state="start", info="Connect"),
    ])
    assert peers == [
        PeerStatus("192.0.2.2", "node-to-node mesh", "up", "12:35:53", "Established"),
        PeerStatus("203.0.113.7", "global", "start", "12:35:53", "Active Socket: Connection refused"),
        PeerStatus("198.51.100.1", "node specific", "start", "12:35:53", "Connect"),
    ]


def test_only_bgp_protocols_with_calico_names_are_peers() -> None:
    protocols = [
        Protocol("kernel1", "Kernel", "master4", "up", "12:00:00", ""),
        Protocol("Mesh_192_0_2_9", "Static", "master4", "up", "12:00:00", ""),  # a peer-like name, not BGP
        bgp("upstream"),  # BGP, not a Calico name
        bgp("Mesh_not_an_address"),
        bgp("Mesh_192_0_2_2_port_180"),
        bgp("Node_192_0_2_3"),
    ]
    assert [p.address for p in peers_from_protocols(protocols)] == ["192.0.2.3"]


def test_ipv6_names_use_underscores_for_colons() -> None:
    [peer] = peers_from_protocols([bgp("Mesh_fd80_24e2_f998_72d7__2")])
    assert (peer.address, peer.peer_type) == ("fd80:24e2:f998:72d7::2", "node-to-node mesh")


def test_since_is_a_wall_clock_time_whatever_birds_timeformat() -> None:
    for since in ("10:31:36", "10:31:36.123", "2026-11-25 10:31:36", "2026-11-25 10:31:36.123"):
        assert peers_from_protocols([bgp("Mesh_192_0_2_2", since=since)])[0].since == "10:31:36"
    # A date alone (BIRD 1 printed that for sessions older than a day) is shown as it is, like Calico.
    assert peers_from_protocols([bgp("Mesh_192_0_2_2", since="2016-11-21")])[0].since == "2016-11-21"


def test_show_protocols_rows_as_bird_2_prints_them() -> None:
    # Lines exactly as BIRD 2.0.12 sends them (after the code): a name longer than the column
    # pushes the others right, so columns are split on whitespace; info may hold spaces.
    row = parse_protocol("Mesh_192_0_2_2 BGP        ---        start  02:50:28.633  Active        "
                         "Socket: Connection refused")
    assert row == Protocol("Mesh_192_0_2_2", "BGP", "---", "start", "02:50:28.633", "Active Socket: Connection refused")
    row = parse_protocol("kernel1    Kernel     master4    up     2026-11-25 02:50:38  ")
    assert row == Protocol("kernel1", "Kernel", "master4", "up", "2026-11-25 02:50:38", "")
    assert parse_protocol("") is None


CALICO_ONE_PEER = """\
Calico process is running.

IPv4 BGP status
+---------------+-------------------+-------+----------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+---------------+-------------------+-------+----------+-------------+
| 12.12.223.152 | node-to-node mesh | up    | 12:35:53 | Established |
+---------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

"""


def test_one_peer_exactly_as_calico_prints_it() -> None:
    peers = peers_from_protocols([bgp("Mesh_12_12_223_152", since="12:35:53")])
    assert format_status(True, peers) == CALICO_ONE_PEER


def test_columns_grow_with_the_widest_cell_and_headers_stay_centred() -> None:
    peers = [PeerStatus("10.0.0.1", "global", "up", "01:02:03", "Established"),
             PeerStatus("10.100.200.250", "node specific", "start", "01:02:04", "Connect")]
    table = format_status(True, peers).split("IPv4 BGP status\n")[1].split("\n\nIPv6")[0]
    assert table == (
        "+----------------+---------------+-------+----------+-------------+\n"
        "|  PEER ADDRESS  |   PEER TYPE   | STATE |  SINCE   |    INFO     |\n"
        "+----------------+---------------+-------+----------+-------------+\n"
        "| 10.0.0.1       | global        | up    | 01:02:03 | Established |\n"
        "| 10.100.200.250 | node specific | start | 01:02:04 | Connect     |\n"
        "+----------------+---------------+-------+----------+-------------+")


def test_long_info_wraps_at_30_characters_like_calico() -> None:
    peers = [PeerStatus("172.16.0.12", "node-to-node mesh", "start", "09:07:34", "Active Socket: Connection refused")]
    assert format_status(True, peers) == (
        "Calico process is running.\n"
        "\n"
        "IPv4 BGP status\n"
        "+--------------+-------------------+-------+----------+--------------------------------+\n"
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |              INFO              |\n"
        "+--------------+-------------------+-------+----------+--------------------------------+\n"
        "| 172.16.0.12  | node-to-node mesh | start | 09:07:34 | Active Socket: Connection      |\n"
        "|              |                   |       |          | refused                        |\n"
        "+--------------+-------------------+-------+----------+--------------------------------+\n"
        "\n"
        "IPv6 BGP status\n"
        "No IPv6 peers found.\n"
        "\n")


def test_no_peers_at_all() -> None:
    assert format_status(True, []) == (
        "Calico process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\n"
        "IPv6 BGP status\nNo IPv6 peers found.\n\n")


def test_ipv6_peers_get_their_own_table() -> None:
    out = format_status(True, peers_from_protocols([bgp("Node_fd80__2", since="08:00:00")]))
    assert "IPv4 BGP status\nNo IPv4 peers found.\n" in out
    assert out.endswith(
        "IPv6 BGP status\n"
        "+--------------+---------------+-------+----------+-------------+\n"
        "| PEER ADDRESS |   PEER TYPE   | STATE |  SINCE   |    INFO     |\n"
        "+--------------+---------------+-------+----------+-------------+\n"
        "| fd80::2      | node specific | up    | 08:00:00 | Established |\n"
        "+--------------+---------------+-------+----------+-------------+\n"
        "\n")


def test_not_running_with_and_without_a_reason() -> None:
    assert format_status(False, []) == "Calico process is not running.\n"
    assert format_status(False, [PeerStatus("192.0.2.2", "global", "up", "x", "y")], "no calico-node agent found") == (
        "Calico process is not running.\nno calico-node agent found\n")


def test_running_but_bird_unreachable() -> None:
    out = format_status(True, [], "BIRD is not running (no control socket at /var/run/calico/bird.ctl)")
    assert out == (
        "Calico process is running.\n\n"
        "IPv4 BGP status\nError querying BIRD: BIRD is not running (no control socket at /var/run/calico/bird.ctl)\n\n"
        "IPv6 BGP status\nError querying BIRD: BIRD is not running (no control socket at /var/run/calico/bird.ctl)\n\n")
