"""Classification of provider answers, and the SMS rendering of choices (no network, no DB)."""

from __future__ import annotations

import pytest
from telegram import InlineKeyboardMarkup, ReplyKeyboardMarkup, ReplyKeyboardRemove
from telegram import error as tg_error

from dispatch.models import BlockReason
from dispatch.senders import (
    Permanent,
    RateLimited,
    SendResult,
    Transient,
    choice_from_reply,
    classify_telegram_error,
    classify_twilio_error,
    numbered_choices,
    telegram_markup,
)

BUTTONS = [[{"text": "I'm OK", "data": "c:7:ok"}, {"text": "I need help", "data": "c:7:help"}]]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (tg_error.RetryAfter(7), RateLimited(retry_after=7.0)),
        (
            tg_error.Forbidden("Forbidden: bot was blocked by the user"),
            Permanent(
                error="Forbidden: Forbidden: bot was blocked by the user",
                reason=BlockReason.BLOCKED,
            ),
        ),
        (
            tg_error.BadRequest("Chat not found"),
            Permanent(error="BadRequest: Chat not found", reason=BlockReason.CHAT_NOT_FOUND),
        ),
        (
            tg_error.BadRequest("Message is too long"),
            Permanent(error="BadRequest: Message is too long", reason=None),
        ),
        (tg_error.TimedOut(), Transient(error="TimedOut: Timed out")),
        (tg_error.NetworkError("Bad Gateway"), Transient(error="NetworkError: Bad Gateway")),
        (TimeoutError(), Transient(error="TimeoutError: ")),
        (ConnectionResetError("reset"), Transient(error="ConnectionResetError: reset")),
    ],
)
def test_telegram_errors_are_classified(error: Exception, expected: SendResult) -> None:
    assert classify_telegram_error(error) == expected


def test_an_unknown_exception_is_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        classify_telegram_error(ZeroDivisionError())


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, 21610, Permanent(error="twilio 21610", reason=BlockReason.UNSUBSCRIBED)),
        (400, 21211, Permanent(error="twilio 21211", reason=BlockReason.INVALID_NUMBER)),
        (400, 21614, Permanent(error="twilio 21614", reason=BlockReason.LANDLINE)),
        (429, 20429, RateLimited(retry_after=1.0)),
        (429, None, RateLimited(retry_after=1.0)),
        (500, None, Transient(error="twilio HTTP 500")),
        (503, 20503, Transient(error="twilio HTTP 503")),
        (401, 20003, Transient(error="twilio HTTP 401 20003")),
        (
            400,
            21602,
            Permanent(error="twilio HTTP 400 21602 Message body is required", reason=None),
        ),
    ],
)
def test_twilio_errors_are_classified(status: int, code: int | None, expected: SendResult) -> None:
    message = "Message body is required" if code == 21602 else "x"
    assert classify_twilio_error(status, code, message) == expected


def test_sms_numbers_the_choices_and_maps_answers_back() -> None:
    assert numbered_choices("Are you OK?", BUTTONS) == "Are you OK?\n1 I'm OK\n2 I need help"
    assert numbered_choices("Hello", None) == "Hello"
    assert choice_from_reply(" 2 ", BUTTONS) == "c:7:help"
    assert choice_from_reply("1.", BUTTONS) == "c:7:ok"
    assert choice_from_reply("3", BUTTONS) is None
    assert choice_from_reply("yes", BUTTONS) is None


def test_buttons_become_an_inline_keyboard() -> None:
    markup = telegram_markup(BUTTONS)
    assert isinstance(markup, InlineKeyboardMarkup)
    row = markup.inline_keyboard[0]
    assert [(b.text, b.callback_data) for b in row] == [
        ("I'm OK", "c:7:ok"),
        ("I need help", "c:7:help"),
    ]
    assert telegram_markup(None, kind="checkin") is None
    assert isinstance(telegram_markup(None, kind="reply"), ReplyKeyboardRemove)


def test_a_contact_request_becomes_a_one_time_reply_keyboard() -> None:
    markup = telegram_markup([[{"text": "Share my number", "data": "kb:contact"}]])
    assert isinstance(markup, ReplyKeyboardMarkup)
    assert markup.one_time_keyboard is True
    assert markup.keyboard[0][0].request_contact is True
    assert numbered_choices("Your number?", [[{"text": "Share", "data": "kb:contact"}]]) == (
        "Your number?"
    )


def test_a_bot_token_in_an_error_never_reaches_last_error() -> None:
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    result = classify_telegram_error(
        tg_error.NetworkError(f"httpx.ConnectError: https://x/bot{token}/sendMessage")
    )
    assert isinstance(result, Transient)
    assert token not in result.error
    assert "<token>" in result.error
