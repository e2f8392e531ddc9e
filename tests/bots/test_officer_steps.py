"""The officers' step table: one rule for every step, in every language, on both channels.

A numbered choice is taken by its number in any script exactly as by its button; the
emergency's second confirmation alone has no number (only its typed word sends it). On both
databases, through the inbound pipeline."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from bots.officers import STEPS, Desk, OfficerStep, _authority_of, _draft_of
from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from config.settings import Settings
from dispatch.channels.base import Choice
from registry.models import Channel
from registry.profile_sync import Directory
from registry.staff import StaffRole, find_staff
from tests.bots.test_dialog_fuzz import Message
from tests.bots.test_officer_fuzz import Officer, Town, _flow, _open, town  # noqa: F401  (a fixture)

DRILL = {"mode": "drill", "who": "residents", "kind": "checkin"}
# A step, what the flow holds there, and the step its first choice leads to.
ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("audience", {"mode": "drill"}, "template"),
    ("zones", {"mode": "drill", "who": "residents"}, "template"),
    ("template", {"mode": "drill", "who": "residents"}, "confirm"),
    ("confirm", {**DRILL, "mode": "emergency"}, "again"),
    ("task", {"offered": ["{task}"]}, "give"),
    ("language", {}, ""),
]
ONE = ("1", "١", "۱", "１", "१", "¹")


def test_every_step_of_the_table_is_covered_or_has_no_number() -> None:
    covered = {step for step, _, _ in ROWS}
    numbered = {step.value for step, row in STEPS.items() if row.numbered}
    # The alert, give, member and unmember steps are answered by number in the help loop's and
    # the coordinators' own tests (test_group_members_sms); the text step takes free text only.
    assert numbered - covered == {"alert", "give", "text", "member", "unmember"}
    assert not STEPS[OfficerStep.AGAIN].numbered


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize(("step", "flow", "goes"), ROWS)
def test_a_choice_by_its_number_in_any_script_is_the_choice_by_its_button(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    town: Town,  # noqa: F811
    language: Language,
    step: str,
    flow: dict[str, Any],
    goes: str,
) -> None:
    start = {"step": step, **flow}
    pressed = _open(
        sessions, dialog, directory, town, Channel.TELEGRAM, language, start, StaffRole.OFFICER
    )
    first: Choice = _first_choice(pressed, step)
    pressed.send_in(Message("button", text=f"officer.{step}:{first.value}"), town)
    if step == "zones":  # a tap toggles a zone; "done" goes on
        pressed.send_in(Message("button", text="officer.zones:done"), town)
    by_button = pressed.conversation()
    assert by_button is not None
    assert _flow(by_button).get("step", "") == goes
    for digit in ONE:
        typed = _open(
            sessions, dialog, directory, town, Channel.SMS, language, start, StaffRole.OFFICER
        )
        replies = typed.send_in(Message("text", text=digit), town)
        conversation = typed.conversation()
        assert conversation is not None
        assert _flow(conversation).get("step", "") == goes, (digit, replies)
        if step != "language":
            assert _flow(conversation) == _flow(by_button), digit


def test_the_emergency_is_sent_only_by_its_typed_word(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    town: Town,  # noqa: F811
) -> None:
    start = {"step": "again", **DRILL, "mode": "emergency"}
    for text in ("1", "١", "yes"):
        officer = _open(
            sessions, dialog, directory, town, Channel.SMS, Language.AR, start, StaffRole.OFFICER
        )
        assert officer.send_in(Message("text", text=text), town) == [
            t(Language.AR, "staff.pin.ask")
        ]
        assert officer.send_in(Message("text", text="482913"), town) == [
            t(Language.AR, "officer.cancelled")
        ]
    officer = _open(
        sessions, dialog, directory, town, Channel.SMS, Language.AR, start, StaffRole.OFFICER
    )
    officer.send_in(Message("text", text=t(Language.AR, "officer.confirm.word")), town)
    replies = officer.send_in(Message("text", text="482913"), town)
    assert replies[0].startswith(t(Language.AR, "officer.started", campaign="\0", people=0)[:8])


def _first_choice(officer: Officer, step: str) -> Choice:
    """The first choice the step offers, as the officer would see it."""
    stored = officer.conversation()
    assert stored is not None
    with officer.sessions() as session:
        conversation = session.merge(stored)
        member = find_staff(session, channel=officer.channel, address=officer.address)
        assert member is not None
        desk = Desk(
            session,
            conversation,
            officer.channel,
            officer.address,
            member.language,
            officer.dialog.profile,
            Settings.model_construct(),
            officer.clock,
            member,
            _draft_of(conversation),
        )
        desk.authority = _authority_of(session, member)
        choices = STEPS[OfficerStep(step)].choices(desk)
        session.rollback()
    return choices[0]
