"""What the dialog says, before it is rendered for a channel: text plus the choices offered."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Request(StrEnum):
    """Something only Telegram can ask for with a button of its own."""

    CONTACT = "contact"
    LOCATION = "location"


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Prompt:
    """One message to send. ``step`` names the dialog step its buttons answer.

    ``numbered`` choices are listed with numbers on SMS; otherwise SMS shows only the text (for
    example "write a number") while Telegram still offers the buttons as shortcuts. The dialog
    turns off numbering where the free text is itself a number, so the two never meet.
    """

    text: str
    step: str = ""
    choices: tuple[Choice, ...] = ()
    multi: bool = False
    selected: frozenset[str] = field(default_factory=frozenset)
    numbered: bool = True
    requests: tuple[Request, ...] = ()
    navigation: bool = False
