"""The per-source count of connections without a started call, alone (no I/O)."""

from __future__ import annotations

import pytest

from sessions.unstarted import UnstartedConnections


def test_each_source_is_capped_on_its_own() -> None:
    u = UnstartedConnections(2)
    a1, a2 = u.admit("10.0.0.1"), u.admit("10.0.0.1")
    assert a1 is not None and a2 is not None
    assert u.admit("10.0.0.1") is None  # the third from the same address
    assert u.admit("10.0.0.2") is not None  # another address is not affected
    assert u.count("10.0.0.1") == 2


def test_a_slot_is_freed_once_even_if_released_twice() -> None:
    u = UnstartedConnections(1)
    slot = u.admit("10.0.0.1")
    assert slot is not None
    slot.release()  # the carrier's start
    slot.release()  # the end of the connection: no double count
    assert u.count("10.0.0.1") == 0 and u.sources == 0  # nothing kept for idle sources
    again = u.admit("10.0.0.1")
    assert again is not None
    assert u.admit("10.0.0.1") is None


def test_zero_means_no_cap() -> None:
    u = UnstartedConnections(0)
    slots = [u.admit("10.0.0.1") for _ in range(10_000)]
    assert all(s is not None for s in slots)
    assert u.sources == 0
    with pytest.raises(ValueError):
        UnstartedConnections(-1)
