"""Rendering prompts for a channel: Telegram buttons, or numbered choices written into an SMS.

Telegram callback data is ``b:<step>:<value>`` so a tap on an old keyboard is recognised as old
(its step is not the current one) and answered with the current question. Buttons that ask for a
contact or a location use the ``kb:`` data values that the Telegram sender renders as a reply
keyboard (see the note in dispatch's Telegram sender).
"""

from __future__ import annotations

from dataclasses import dataclass

from bots.prompts import Prompt, Request
from config.i18n import t
from config.languages import Language
from dispatch.segments import count_segments as segments

CALLBACK_PREFIX = "b:"
CONTACT_BUTTON = "kb:contact"
LOCATION_BUTTON = "kb:location"
MAX_SMS_SEGMENTS = 3
_SHORT_LABEL = 14  # labels up to this length sit two to a row


@dataclass(frozen=True)
class Rendered:
    text: str
    buttons: list[list[tuple[str, str]]] | None = None


def for_telegram(prompt: Prompt, language: Language) -> Rendered:
    rows: list[list[tuple[str, str]]] = []
    for request in prompt.requests:
        if request == Request.CONTACT:
            rows.append([(t(language, "bot.telegram.share_contact"), CONTACT_BUTTON)])
        else:
            rows.append([(t(language, "bot.telegram.share_location"), LOCATION_BUTTON)])
    row: list[tuple[str, str]] = []
    for choice in prompt.choices:
        label = f"✅ {choice.label}" if choice.value in prompt.selected else choice.label
        button = (label, f"{CALLBACK_PREFIX}{prompt.step}:{choice.value}")
        if len(choice.label) > _SHORT_LABEL:
            if row:
                rows.append(row)
                row = []
            rows.append([button])
            continue
        row.append(button)
        if len(row) == 2:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    text = prompt.text
    if prompt.multi:
        rows.append([(t(language, "bot.nav.done"), f"{CALLBACK_PREFIX}{prompt.step}:done")])
        text = f"{text}\n{t(language, 'bot.telegram.multi_hint')}"
    if prompt.navigation:
        rows.append(
            [
                (t(language, "bot.nav.back"), f"{CALLBACK_PREFIX}{prompt.step}:_back"),
                (t(language, "bot.nav.cancel"), f"{CALLBACK_PREFIX}{prompt.step}:_cancel"),
            ]
        )
    return Rendered(text=text, buttons=rows or None)


def for_sms(prompt: Prompt, language: Language) -> list[Rendered]:
    """One SMS, or two when the question and its list together would pass three segments."""
    lines = []
    if prompt.numbered:
        lines = [f"{number} {choice.label}" for number, choice in enumerate(prompt.choices, 1)]
    text = prompt.text
    if prompt.multi:
        text = f"{text}\n{t(language, 'bot.sms.multi_hint')}"
    if not lines:
        return [Rendered(text=text)]
    whole = "\n".join([text, *lines])
    if segments(whole) <= MAX_SMS_SEGMENTS:
        return [Rendered(text=whole)]
    return [Rendered(text=text), Rendered(text="\n".join(lines))]
