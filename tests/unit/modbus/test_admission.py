"""Who may connect to the Modbus server and who makes room at the limit
(:mod:`gateway.modbus.admission`), on plain values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.errors import ConfigError
from gateway.modbus.admission import INCOMPLETE_EVICT_S, Admission, client_address

NOW = 1000.0


@dataclass
class Conn:
    name: str
    last_active: float = NOW
    incomplete_since: float | None = None
    idle: bool = True


def admission(idle_evict_s: float = 30.0, allow_from: tuple[str, ...] | None = None
              ) -> Admission:
    return Admission(per_address=3, idle_evict_s=idle_evict_s, allow_from=allow_from)


def test_a_trickler_goes_first_the_oldest_incomplete_frame_first() -> None:
    conns = [Conn("silent", last_active=NOW - 3600),
             Conn("trickler", incomplete_since=NOW - 2.0),
             Conn("older-trickler", incomplete_since=NOW - 4.0),
             Conn("good")]
    assert admission().victim(conns, NOW) == (conns[2], "incomplete_frame")


def test_bytes_do_not_make_a_client_active() -> None:
    """A trickler that just answered a request (its frames complete, slowly) but holds the
    next incomplete frame is still the one to go."""
    conns = [Conn("slow", last_active=NOW, incomplete_since=NOW - INCOMPLETE_EVICT_S)]
    assert admission().victim(conns, NOW) == (conns[0], "incomplete_frame")


def test_a_frame_in_flight_for_less_than_a_second_is_no_reason() -> None:
    conns = [Conn("splitting", incomplete_since=NOW - 0.2)]
    assert admission().victim(conns, NOW) is None


def test_otherwise_the_client_silent_longest_if_silent_long_enough() -> None:
    conns = [Conn("a", last_active=NOW - 40), Conn("b", last_active=NOW - 50), Conn("c")]
    assert admission().victim(conns, NOW) == (conns[1], "silent")
    assert admission(idle_evict_s=60).victim(conns, NOW) is None


def test_a_connection_waiting_for_its_write_is_never_dropped() -> None:
    conns = [Conn("write", last_active=NOW - 3600, incomplete_since=NOW - 60, idle=False)]
    assert admission().victim(conns, NOW) is None


def test_per_address_counts() -> None:
    adm = admission()
    for _ in range(3):
        assert not adm.at_cap("10.0.0.1")
        adm.opened("10.0.0.1")
    assert adm.at_cap("10.0.0.1")
    assert not adm.at_cap("10.0.0.2")
    adm.closed("10.0.0.1")
    assert not adm.at_cap("10.0.0.1")
    adm.opened("10.0.0.1")
    assert adm.at_cap("10.0.0.1")


def test_allow_from_networks_of_both_families() -> None:
    adm = admission(allow_from=("192.168.1.0/24", "fd00::/8"))
    assert adm.allowed("192.168.1.77")
    assert adm.allowed("fd12::1")
    assert not adm.allowed("192.168.2.1")
    assert not adm.allowed("2001:db8::1")
    assert not adm.allowed("not an address")
    assert admission().allowed("203.0.113.9")  # no list: everyone


def test_an_ipv4_client_of_a_dual_stack_socket_counts_as_ipv4() -> None:
    assert client_address(("::ffff:192.168.1.77", 5020, 0, 0)) == ("192.168.1.77",
                                                                    "192.168.1.77:5020")
    assert client_address(("fd00::1", 40000, 0, 0)) == ("fd00::1", "fd00::1:40000")
    assert client_address(("10.0.0.1", 1234)) == ("10.0.0.1", "10.0.0.1:1234")


def test_an_invalid_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allow_from"):
        admission(allow_from=("10.0.0.1/8",))
