"""Start-up's lifelong objects are frozen out of the cyclic collector's passes (hosen.heap)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from config.settings import Settings
from hosen.context import Context
from hosen.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test process's heap is frozen only for the test that asks for it."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_startup_objects_leave_the_collections_and_later_cycles_are_still_collected(
    thawed: None,
) -> None:
    startup = [_Node() for _ in range(3)]

    frozen = freeze_startup_heap()

    assert frozen == gc.get_freeze_count() > 0
    assert not any(any(o is node for o in gc.get_objects()) for node in startup)
    # What the running process builds afterwards is collected as before.
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None


def test_the_server_freezes_its_heap_once_started_only_when_asked(
    thawed: None, database_url: str, engine: object
) -> None:
    from hosen.app import build_app

    settings = Settings(database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    ctx = Context(settings=settings)

    async def frozen_while_serving(freeze_heap: bool) -> int:
        app = build_app(
            ctx, run_worker=False, run_bot=False, run_scheduler=False, freeze_heap=freeze_heap
        )
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    try:
        assert asyncio.run(frozen_while_serving(False)) == 0  # a test's or a demo's app
        assert asyncio.run(frozen_while_serving(True)) > 0  # hosen serve
    finally:
        ctx.close()
