"""The dialog's vocabulary: its named steps, the typed draft of answers, and what an answer is.

The draft is kept as JSON in :attr:`bots.models.Conversation.draft`. :meth:`Draft.load` reads any
row written before (a value of the wrong type is dropped, not fatal) and keeps keys this dialog
does not own (the officers' flow state) as they came; :meth:`Draft.dump` writes only what was
answered, so "answered" and "skipped" (``None``) stay apart: a skipped emergency contact is
answered, a question not reached yet is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bots.words import Word, clean, fold, is_word
from config.languages import Language
from dispatch.channels.base import Choice
from dispatch.models import HelpNeed
from registry.models import PhoneSource


class Step(StrEnum):
    NEW = ""
    LANGUAGE = "language"
    WHO = "who"
    NAME = "name"
    PHONE = "phone"
    PHONE_CODE = "phone_code"  # a typed number's one-time code, sent to it by SMS
    AUTHORITY = "authority"
    ZONE = "zone"
    BIRTH_YEAR = "birth"
    SKILLS = "skills"
    LANGUAGES = "langs"
    AVAILABILITY = "avail"
    VEHICLE = "vehicle"
    CAPACITY = "capacity"
    NEEDS = "needs"
    CONTACT_NAME = "ec_name"
    CONTACT_PHONE = "ec_phone"
    CONSENT = "consent"
    HEALTH_CONSENT = "health"
    GUARDIAN = "guardian"
    SUMMARY = "summary"
    MENU = "menu"
    UPDATE = "update"
    DELETE = "delete"
    HELP_KIND = "help_kind"  # a registered person asks for help from the menu: what kind
    HELP_DETAIL = "help_detail"  # and, optionally, a few words about it
    HELP_WHAT = "help_what"  # asked once after a request in words that named no kind
    STOPPED = "stopped"


class Who(StrEnum):
    VOLUNTEER = "volunteer"
    RESIDENT = "resident"
    BOTH = "both"
    FAMILY = "family"  # a family member registers a resident


class Availability(StrEnum):
    BOTH = "both"
    EMERGENCY = "emergency"
    ROUTINE = "routine"


class Draft(BaseModel):
    """The answers given so far in one conversation (JSON keys as they have always been)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    language: Language | None = None
    group: str | None = None  # the join code of the group they came from
    who: Who | None = None
    name: str | None = None
    phone: str | None = None  # E.164; None: skipped
    phone_source: PhoneSource | None = None  # how the phone is known (contact, code, typed)
    authority: str | None = None
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    birth_year: int | None = None
    skills: list[str] = Field(default_factory=list)
    langs: list[str] = Field(default_factory=list)
    avail: Availability | None = None
    vehicle: bool | None = None
    capacity: int | None = None
    needs: list[str] = Field(default_factory=list)
    ec_name: str | None = None  # None: skipped
    ec_phone: str | None = None
    consent: str | None = None  # the consent text's version agreed to
    health: str | None = None  # None: declined, and no need is kept
    guardian: str | None = None  # the guardian's name, or "given"; None: declined
    # Bookkeeping, not answers: JSON keys start with "_".
    editing: bool = Field(default=False, alias="_edit")  # a registered person edits one answer
    resume: Step | None = Field(default=None, alias="_resume")  # where STOP interrupted them
    picked_skills: list[str] | None = Field(default=None, alias="_skills")  # toggled, not done
    picked_langs: list[str] | None = Field(default=None, alias="_langs")
    picked_needs: list[str] | None = Field(default=None, alias="_needs")
    new_consents: list[str] = Field(default_factory=list, alias="_new_consents")
    # A typed number waiting for its one-time code, and whether it is a landline (no code).
    code_phone: str | None = Field(default=None, alias="_code_phone")
    code_landline: bool = Field(default=False, alias="_code_landline")
    # The kind of help chosen from the menu, until the request is made (its words are never kept).
    help_need: HelpNeed | None = Field(default=None, alias="_help_need")
    # The request in words that named no kind, while its kind is asked.
    help_alert: int | None = Field(default=None, alias="_help_alert")

    BOOKKEEPING: ClassVar[frozenset[str]] = frozenset(
        {
            "editing",
            "resume",
            "picked_skills",
            "picked_langs",
            "picked_needs",
            "new_consents",
            "code_phone",
            "code_landline",
            "help_need",
            "help_alert",
        }
    )

    @classmethod
    def load(cls, data: Mapping[str, Any] | None) -> Draft:
        """A draft from its JSON; a value that does not fit (an old or damaged row) is dropped."""
        return tolerant(cls, data)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def has(self, name: str) -> bool:
        """Whether ``name`` was answered (a skip is an answer)."""
        return name in self.model_fields_set

    def forget(self, *names: str) -> None:
        """Make these answers unanswered again."""
        for name in names:
            setattr(
                self, name, type(self).model_fields[name].get_default(call_default_factory=True)
            )
            self.model_fields_set.discard(name)

    def answered(self) -> set[str]:
        """The answers given (bookkeeping and other flows' keys left out)."""
        return (self.model_fields_set & type(self).model_fields.keys()) - self.BOOKKEEPING

    def others(self) -> dict[str, Any]:
        """Keys this dialog does not own (another flow's state), kept as they came."""
        return dict(self.model_extra or {})

    @property
    def volunteer(self) -> bool:
        return self.who in (Who.VOLUNTEER, Who.BOTH)

    @property
    def resident(self) -> bool:
        return self.who in (Who.RESIDENT, Who.BOTH, Who.FAMILY)

    @property
    def family(self) -> bool:
        return self.who == Who.FAMILY


class Go(Enum):
    """Where the dialog goes after a step took an answer (else: the step named)."""

    NEXT = "next"  # the next registration step that applies and is not answered yet
    AGAIN = "again"  # this step's question again (a toggled option, a declined consent)
    DONE = "done"  # the step has said everything itself (the menu, a goodbye)


@dataclass(frozen=True)
class Answer:
    """What a message said to the current step, once understood."""

    choice: str | None = None  # the value of the one choice it named (button, number, word)
    many: frozenset[str] | None = None  # the choices it named, on a step that takes several
    text: str | None = None  # free text, checked (a name, an E.164 phone)
    number: int | None = None  # a number, checked (a year of birth, a capacity)
    contact: str | None = None  # a shared contact's phone
    location: tuple[float, float] | None = None  # a shared location

    @property
    def picked(self) -> str:
        """The choice named, on a step that takes nothing else."""
        if self.choice is None:
            raise Invalid("bot.error.choice")
        return self.choice


class Invalid(Exception):
    """An answer the step cannot take; ``key`` is the catalog message that says why."""

    def __init__(self, key: str, /, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


Model = TypeVar("Model", bound=BaseModel)


def tolerant(model: type[Model], data: object) -> Model:
    """``model`` from stored JSON: a value that does not fit (an old or damaged row) is dropped,
    the rest kept; anything that is no mapping at all gives an empty one."""
    raw = dict(data) if isinstance(data, Mapping) else {}
    for _ in range(len(raw) + 1):
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            bad = {e["loc"][0] for e in error.errors() if e["loc"]}
            if not bad & raw.keys():
                break
            for key in bad:
                raw.pop(str(key), None)
    return model()


# --- understanding a choice: the one rule of every step of every dialog -----------------------


def choice_named(
    text: str | None,
    choices: tuple[Choice, ...],
    *,
    language: Language | None,
    english: Callable[[], tuple[Choice, ...]] = lambda: (),
    numbered: bool = True,
) -> str | None:
    """The choice a text names: its number (digits of any script: "٢" is 2), its label or value
    in the person's language or in English (``english``: the same choices labelled in English),
    or its keyword ("yes", "כן"...). ``numbered`` False: the choices were shown without numbers
    (a step whose answer must be typed), so a number names none of them."""
    folded = fold(text)
    if not folded:
        return None
    number = clean(text).rstrip(".)")
    if number.isdecimal():
        index = int(number) - 1
        return choices[index].value if numbered and 0 <= index < len(choices) else None
    if folded.isdecimal():
        return None  # "-1", "#2": not clearly one of the numbers offered
    labels = {c.value: fold(c.label) for c in english()}
    words = set(Word.__members__.values())
    for choice in choices:
        if folded in (fold(choice.label), fold(choice.value), labels.get(choice.value)):
            return choice.value
        if choice.value in words and is_word(text, language, Word(choice.value)):
            return choice.value
    return None


def choices_named(text: str | None, named: Callable[[str], str | None]) -> set[str]:
    """Several choices in one message ("1 3", "1, 3", "North Hill, 2"): the whole text as one
    choice, else its comma-separated parts, else their words, each named as ``named`` says.
    Raises :class:`Invalid` when a part names nothing offered."""
    if not fold(text):
        raise Invalid("bot.error.choice")
    single = named(text or "")
    if single is not None:
        return {single}
    chosen: set[str] = set()
    for part in clean(text).replace("،", ",").replace(";", ",").split(","):
        if not fold(part):
            continue
        found = named(part)
        if found is not None:
            chosen.add(found)
            continue
        for token in clean(part).split():
            found = named(token)
            if found is None:
                raise Invalid("bot.error.choice")
            chosen.add(found)
    return chosen
