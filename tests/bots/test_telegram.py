"""The Telegram edge without a network: updates become deliveries, and the polling watchdog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telegram import Bot, Update

from bots.telegram import PollWatch, keep_polling, restart_if_stalled
from dispatch.channels.telegram import delivery_from_payload, delivery_from_update
from fakes.telegram import FakeTelegram


@pytest.fixture(scope="module")
def builder() -> FakeTelegram:
    """The fake's update builders (no server needed to build updates)."""
    return FakeTelegram()


def as_update(data: dict[str, Any]) -> Update:
    update = Update.de_json(data, Bot("123:" + "x" * 35))
    assert update is not None
    return update


def test_text_and_commands(builder: FakeTelegram) -> None:
    user = builder.new_user("Dana")
    delivery = delivery_from_update(as_update(builder.start_command(user, "ba-7f3k")))
    assert delivery is not None
    assert delivery.provider_key.startswith("tg:")
    assert delivery.inbound.address == str(user.id) and delivery.inbound.text == "/start ba-7f3k"
    assert not delivery.group_chat and not delivery.ignored


def test_a_shared_contact_is_own_only_when_the_user_ids_match(builder: FakeTelegram) -> None:
    user = builder.new_user("Omar")
    own = delivery_from_update(as_update(builder.contact(user, "+972525557777")))
    other = delivery_from_update(
        as_update(builder.contact(user, "+972525550000", contact_user_id=99))
    )
    unknown = delivery_from_update(
        as_update(builder.contact(user, "+972525550000", contact_user_id=None))
    )
    assert own is not None and own.inbound.contact_is_sender
    assert other is not None and not other.inbound.contact_is_sender
    assert unknown is not None and not unknown.inbound.contact_is_sender


def test_location_sticker_photo_and_edits(builder: FakeTelegram) -> None:
    user = builder.new_user("Noa")
    located = delivery_from_update(as_update(builder.location(user, 31.61, 34.77)))
    assert located is not None and located.inbound.location == (31.61, 34.77)
    for update in (builder.sticker(user), builder.photo(user, caption="me")):
        delivery = delivery_from_update(as_update(update))
        assert delivery is not None and delivery.inbound.unsupported
    edited = delivery_from_update(as_update(builder.edited(builder.text(user, "Noa"), "Noa L")))
    assert edited is not None and edited.ignored


def test_group_messages_are_marked(builder: FakeTelegram) -> None:
    user = builder.new_user("Yael")
    group = builder.new_group()
    chatter = delivery_from_update(as_update(builder.text(user, "hello all", chat=group)))
    command = delivery_from_update(as_update(builder.text(user, "/start", chat=group)))
    assert chatter is not None and chatter.group_chat and not chatter.addressed_to_bot
    assert command is not None and command.group_chat and command.addressed_to_bot


def test_callbacks_lose_their_prefix_and_keep_foreign_ones(builder: FakeTelegram) -> None:
    user = builder.new_user("Dana")
    message = builder._incoming(user, None, text="Q")  # a message to hang buttons on
    message["from"] = {"id": 1, "is_bot": True, "first_name": "Hosen"}
    dialog = delivery_from_update(
        as_update(builder.callback(user, message, "b:who:both", check_button=False))
    )
    campaign = delivery_from_update(
        as_update(builder.callback(user, message, "c:17:ok", check_button=False))
    )
    assert dialog is not None and dialog.inbound.button == "who:both"
    assert campaign is not None and campaign.inbound.button == "c:17:ok"


def test_a_stored_update_decodes_as_python_telegram_bot_decodes_it(builder: FakeTelegram) -> None:
    """The processor reads plain texts and button presses from the stored dict itself: every
    kind of update gives the same delivery as python-telegram-bot's objects give."""
    user = builder.new_user("Dana")
    group = builder.new_group()
    asked = builder._incoming(user, None, text="Q")
    asked["from"] = {"id": 1, "is_bot": True, "first_name": "Hosen"}
    in_group = builder._incoming(user, group, text="Q")
    gone = {**asked, "date": 0}  # an inaccessible message: its chat is still given
    without_message = builder.callback(user, asked, "c:17:ok", check_button=False)
    del without_message["callback_query"]["message"]
    without_data = builder.callback(user, asked, "b:x:y", check_button=False)
    del without_data["callback_query"]["data"]
    no_from = builder.text(user, "1")
    del no_from["message"]["from"]
    malformed = builder.text(user, "1")
    del malformed["message"]["date"]
    updates = [
        builder.text(user, "1"),
        builder.text(user, "כן"),
        builder.text(user, "/start ba-7f3k"),
        builder.text(user, "hello all", chat=group),
        builder.text(user, "/start", chat=group),
        no_from,
        builder.callback(user, asked, "c:17:ok", check_button=False),
        builder.callback(user, asked, "b:who:both", check_button=False),
        builder.callback(user, in_group, "c:17:ok", check_button=False),
        builder.callback(user, gone, "c:17:ok", check_button=False),
        without_message,
        without_data,
        builder.contact(user, "+972525557777"),
        builder.location(user, 31.61, 34.77),
        builder.sticker(user),
        builder.photo(user, caption="me"),
        builder.edited(builder.text(user, "Noa"), "Noa L"),
    ]
    for update in updates:
        assert delivery_from_payload(update) == delivery_from_update(
            as_update(update), payload=update
        ), update
    with pytest.raises(KeyError):  # what python-telegram-bot refuses is refused as before
        delivery_from_payload(malformed)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 22, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class StubbornUpdater:
    """Stands in for python-telegram-bot's Updater: counts stops and starts."""

    running: bool = True
    stops: int = 0
    starts: int = 0

    async def stop(self) -> None:
        self.stops += 1
        self.running = False

    async def start_polling(self, **kwargs: Any) -> None:
        self.starts += 1
        self.running = True


def test_silent_polling_is_restarted() -> None:
    clock = Clock()
    watch = PollWatch(clock=clock, stall_after=90)
    updater = StubbornUpdater()
    watch.mark()

    async def scenario() -> None:
        clock.now += timedelta(seconds=60)
        assert not await restart_if_stalled(updater, watch)
        clock.now += timedelta(seconds=31)  # 91 s since the last good poll
        assert await restart_if_stalled(updater, watch)
        assert (updater.stops, updater.starts, watch.restarts) == (1, 1, 1)
        # The restart gives the poller a fresh period: no restart storm.
        assert not await restart_if_stalled(updater, watch)

    asyncio.run(scenario())


def test_the_watchdog_loop_checks_until_stopped() -> None:
    clock = Clock()
    watch = PollWatch(clock=clock, stall_after=90)
    watch.mark()
    updater = StubbornUpdater()
    stop = asyncio.Event()
    checks = 0

    async def sleep(seconds: float) -> None:
        nonlocal checks
        checks += 1
        clock.now += timedelta(seconds=seconds)  # time moves only when the loop waits
        if checks == 30:
            stop.set()

    asyncio.run(keep_polling(updater, watch, stop=stop, every=10, sleep=sleep))
    # Checked at 0, 10, ... 290 s with no poll answered: restarted at 100 s and at 200 s.
    assert updater.starts == 2 and watch.restarts == 2


def test_the_webhook_stores_an_update_keyed_and_ordered_by_its_chat(builder: FakeTelegram) -> None:
    """Only the key and the chat are read before the acknowledgement; the rest waits."""
    from dispatch.channels.telegram import arrival_from_json, delivery_from_payload

    user = builder.new_user("Dana")
    group = builder.new_group()
    text = builder.text(user, "1")
    in_group = builder.text(user, "/status", chat=group)
    for update, chat in ((text, user.id), (in_group, group["id"])):
        arrival = arrival_from_json(update)
        assert arrival is not None and arrival.payload is update
        assert arrival.provider_key == f"tg:{update['update_id']}"
        assert arrival.address == str(chat)
        delivery = delivery_from_payload(update)  # what the processor makes of it later
        assert delivery is not None and delivery.inbound.address == arrival.address
    press = {"update_id": 77, "callback_query": {"id": "9", "from": {"id": 5}, "data": "c:1:ok"}}
    assert arrival_from_json(press) is not None and arrival_from_json(press).address == "5"  # type: ignore[union-attr]
    assert arrival_from_json({"message": {}}) is None  # no update_id: refused with 400
    assert arrival_from_json([1, 2]) is None
