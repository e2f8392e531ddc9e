"""The Bot API spec checker, from a table of requests (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakes.telegram_spec import load_spec

SPEC = load_spec()
KEYBOARD = {"inline_keyboard": [[{"text": "OK", "callback_data": "c:1:ok"}]]}


@pytest.mark.parametrize(
    ("method", "params", "form", "problem"),
    [
        ("sendMessage", {"chat_id": 5, "text": "hi"}, False, None),
        ("sendMessage", {"chat_id": "@channel", "text": "hi"}, False, None),  # Integer or String
        ("sendMessage", {"chat_id": "5", "text": "hi"}, True, None),
        (
            "sendMessage",
            {"chat_id": "5", "text": "hi", "reply_markup": json.dumps(KEYBOARD)},
            True,
            None,
        ),
        ("sendMessage", {"chat_id": 5, "text": "hi", "reply_markup": KEYBOARD}, False, None),
        ("sendMessage", {"chat_id": 5, "text": "hi", "disable_notification": "true"}, True, None),
        (
            "sendMessage",
            {"chat_id": 5, "text": "hi", "disable_notification": "true"},
            False,
            "expected Boolean",
        ),
        ("sendMessage", {"chat_id": 5.5, "text": "hi"}, False, "expected Integer or String"),
        ("sendMessage", {"chat_id": True, "text": "hi"}, False, "expected Integer or String"),
        ("sendMessage", {"text": "hi"}, False, "missing required field 'chat_id'"),
        (
            "sendMessage",
            {"chat_id": 5, "text": "hi", "reply_markup": {"inline_keyboard": [{"text": "x"}]}},
            False,
            "expected Array of InlineKeyboardButton",
        ),
        (
            "sendMessage",
            {
                "chat_id": 5,
                "text": "hi",
                "reply_markup": {"inline_keyboard": [[{"callback_data": "x"}]]},
            },
            False,
            "missing required field 'text' of InlineKeyboardButton",
        ),
        (
            "sendMessage",
            {
                "chat_id": 5,
                "text": "hi",
                "reply_markup": {
                    "keyboard": [[{"text": "share", "request_contact": True}]],
                    "one_time_keyboard": True,
                },
            },
            False,
            None,
        ),
        (
            "sendMessage",
            {"chat_id": 5, "text": "hi", "reply_markup": {"remove_keyboard": True}},
            False,
            None,
        ),
        (
            "sendMessage",
            {"chat_id": 5, "text": "hi", "reply_markup": "{not json"},
            True,
            "expected InlineKeyboardMarkup or",
        ),
        (
            "setMyCommands",
            {
                "commands": [{"command": "start", "description": "Start"}],
                "scope": {"type": "chat", "chat_id": 5},
            },
            False,
            None,
        ),
        (
            "setMyCommands",
            {"commands": [{"command": "start", "description": "Start"}], "scope": {"type": "chat"}},
            False,
            "matches none of BotCommandScope's forms",
        ),
        (
            "getUpdates",
            {"offset": "12", "timeout": "10", "allowed_updates": '["message"]'},
            True,
            None,
        ),
        ("getUpdates", {"offset": "twelve"}, True, "expected Integer"),
        ("answerCallbackQuery", {"callback_query_id": "1", "show_alert": False}, False, None),
    ],
)
def test_check_request(
    method: str, params: dict[str, Any], form: bool, problem: str | None
) -> None:
    problems = SPEC.check_request(method, params, form=form)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_method_names_are_case_insensitive() -> None:
    assert SPEC.method_name("sendmessage") == "sendMessage"
    assert SPEC.method_name("sendMesage") is None


def test_objects_are_checked_recursively() -> None:
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1}}}
    assert SPEC.check_object("Update", update) == [
        "Update.message.chat: missing required field 'type' of Chat"
    ]
