"""The one way NovaVoice turns a nursery's exception group back into the error it stands for.

trio wraps whatever escapes a nursery in a :class:`BaseExceptionGroup` (strict exception
groups). Where a nursery is an implementation detail of an ``open_*`` context manager or an
actor, callers should see the error as raised (``except PromptError``), not a group.

Rule (:func:`lone_exception`): flatten nested groups; if some leaves are not
:class:`trio.Cancelled`, drop the ``Cancelled`` leaves; if exactly one leaf remains, that
leaf is the answer. Otherwise (several real errors, or several cancellations) there is no
lone exception and the group must propagate unchanged. One refinement: given ``kind``, when
every remaining leaf is a ``kind`` the first one answers (two Sonic legs failing together
are one Sonic failure to the call).

Dropping ``Cancelled`` next to a real error never loses a cancellation: the scope that was
cancelled stays cancelled, so the next checkpoint inside it raises ``Cancelled`` again, and
the real error is what the code above needs to see. A group holding only one ``Cancelled``
yields that ``Cancelled``, which is exactly what trio itself raises, so the cancel scope that
owns it still catches it. Nothing is ever re-wrapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


def lone_exception(
    group: BaseExceptionGroup[BaseException], kind: type[BaseException] | None = None
) -> BaseException | None:
    """The one exception ``group`` stands for, or ``None`` if it stands for several.

    See the module docstring for the rule (nested groups flattened; ``Cancelled`` dropped
    beside a real error; with ``kind``, several ``kind`` leaves answer with the first).
    """
    leaves = _leaves(group)
    real = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    candidates = real or leaves
    if len(candidates) == 1:
        return candidates[0]
    if kind is not None and real and all(isinstance(exc, kind) for exc in real):
        return real[0]
    return None


@contextmanager
def unwrap_lone_exception(kind: type[BaseException] | None = None) -> Iterator[None]:
    """Re-raise a group escaping the block as its lone exception (see :func:`lone_exception`).

    The lone exception is raised as itself, keeping its own ``__cause__``; the group becomes
    its ``__context__``, so the traceback still shows where it came from. A group that
    stands for several errors propagates unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        only = lone_exception(group, kind)
        if only is None:
            raise
        raise only from only.__cause__
