"""The one exception-group helper: a lone error comes out as itself, cancellation survives."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from actors.exception_groups import lone_exception, unwrap_lone_exception


class Boom(Exception):
    pass


async def _raise_boom() -> None:
    raise Boom("x")


async def test_a_lone_error_from_a_nursery_comes_out_as_itself() -> None:
    with pytest.raises(Boom), unwrap_lone_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_raise_boom)


async def test_several_errors_stay_a_group() -> None:
    with pytest.raises(BaseExceptionGroup) as info, unwrap_lone_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_raise_boom)
            nursery.start_soon(_raise_boom)
    assert len(info.value.exceptions) == 2


async def test_several_of_the_preferred_kind_answer_with_the_first() -> None:
    first, second = Boom("1"), Boom("2")
    group = BaseExceptionGroup("g", [first, BaseExceptionGroup("inner", [second])])
    assert lone_exception(group) is None
    assert lone_exception(group, Boom) is first
    assert lone_exception(BaseExceptionGroup("g", [first, ValueError()]), Boom) is None


async def test_an_outer_cancellation_is_still_caught_by_its_own_scope() -> None:
    with trio.CancelScope() as outer, unwrap_lone_exception():
        async with trio.open_nursery():
            outer.cancel()
            await trio.sleep_forever()
    assert outer.cancelled_caught


async def test_cancelled_beside_a_real_error_is_dropped_but_the_scope_stays_cancelled() -> None:
    cancelled = False
    with trio.CancelScope() as outer:
        with pytest.raises(Boom), unwrap_lone_exception():
            async with trio.open_nursery() as nursery:

                async def fail_when_cancelled() -> None:
                    try:
                        await trio.sleep_forever()
                    finally:
                        raise Boom("during cancellation")

                nursery.start_soon(fail_when_cancelled)
                await trio.lowlevel.checkpoint()
                outer.cancel()
                await trio.sleep_forever()
        # The scope is still cancelled: the next checkpoint raises Cancelled again.
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled:
            cancelled = True
            raise
    assert cancelled and outer.cancelled_caught
