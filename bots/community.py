"""Staff commands for communities and resources, over Telegram and SMS.

``/members``: a coordinator sees their groups' members and takes one out (a button or the
number by SMS, then a confirmation). ``/resource CODE available|busy|out``: staff mark a
community resource's state. The rules (who manages which group, what a state is) live in
``registry.groups`` and ``registry.resources``; this module asks and answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from bots.prompts import Choice
from bots.words import number_in
from registry import groups, resources
from registry.models import Group, Person
from registry.staff import NotAuthorized, StaffAction, StaffMember, authorize

if TYPE_CHECKING:
    from bots.officers import Desk

MEMBERS = "/members"
RESOURCE = "/resource"
STEPS = ("member", "unmember")  # choose a member; confirm taking them out
MAX_MEMBERS = 40


def _actor(desk: Desk, member: StaffMember) -> str:
    return f"{desk.channel.value}:staff:{member.id}"


def handles(command: str | None, answer: str | None, step: object) -> bool:
    """Whether a staff message belongs to these commands or to the ``/members`` flow."""
    if command is not None:
        return command in (MEMBERS, RESOURCE)
    if answer is not None:
        return answer.partition(":")[0] in STEPS
    return step in STEPS


def respond(
    desk: Desk,
    member: StaffMember | None,
    authority_id: int | None,
    command: str | None,
    answer: str | None,
    text: str | None,
) -> None:
    if command == RESOURCE:
        return resource(desk, member, authority_id, text)
    return members(desk, member, authority_id, answer, text)


def _allowed(
    desk: Desk,
    member: StaffMember | None,
    action: StaffAction,
    authority_id: int | None,
    group_id: int | None = None,
) -> StaffMember | None:
    try:
        return authorize(
            desk.session,
            channel=desk.channel,
            address=desk.address,
            action=action,
            authority_id=authority_id,
            group_id=group_id,
            now=desk.now,
        )
    except NotAuthorized:
        desk.keep(None)
        desk.refuse(member)
        return None


def members(
    desk: Desk,
    member: StaffMember | None,
    authority_id: int | None,
    answer: str | None,
    text: str | None,
) -> None:
    """``/members`` and every answer inside its flow."""
    managed = groups.groups_managed(desk.session, member) if member is not None else []
    group_id = managed[0].id if managed else None
    staff = _allowed(desk, member, StaffAction.MANAGE_GROUP_MEMBERS, authority_id, group_id)
    if staff is None:
        return None
    state = desk.state
    step, _, value = (answer or "").partition(":")
    if answer is None and state.get("step") in STEPS:
        offered, typed = state.get("offered") or [], number_in(text)
        if typed is not None and 1 <= typed <= len(offered):
            step, value = state["step"], offered[typed - 1]
        elif text is not None and not text.strip().startswith("/"):
            desk.keep(None)
            return desk.say("members.gone")
    if step == "member" and value:
        return _confirm(desk, managed, value)
    if step == "unmember":
        desk.keep(None)
        group_text, _, person_text = value.partition("-")
        if value == "no" or not (group_text.isdecimal() and person_text.isdecimal()):
            return desk.say("members.kept")
        done = groups.remove_by_staff(
            desk.session,
            member=staff,
            group_id=int(group_text),
            person_id=int(person_text),
            actor=_actor(desk, staff),
            now=desk.now,
        )
        if done is None:
            return desk.say("members.gone")
        group, person = done
        return desk.say("members.removed", name=person.name or "?", group=group.name)
    _list(desk, managed)


def _list(desk: Desk, managed: list[Group]) -> None:
    choices: list[Choice] = []
    count = 0
    for group in managed:
        for row in groups.members(desk.session, group, year=desk.now.year):
            count += 1
            if len(choices) < MAX_MEMBERS:
                mark = "★ " if row.coordinator else ""
                choices.append(Choice(f"{group.id}-{row.person_id}", f"{mark}{row.name}"))
    if not count:
        desk.keep(None)
        return desk.say("members.none")
    from bots.officers import _fitting_choices  # the SMS length rule of the staff flows

    kept = _fitting_choices(desk, choices)
    desk.keep({"step": "member", "offered": [c.value for c in kept]})
    title = ", ".join(g.name for g in managed)
    desk.say("members.head", step="member", choices=tuple(kept), group=title, count=count)


def _confirm(desk: Desk, managed: list[Group], value: str) -> None:
    group_text, _, person_text = value.partition("-")
    group = next((g for g in managed if str(g.id) == group_text), None)
    person = desk.session.get(Person, int(person_text)) if person_text.isdecimal() else None
    if group is None or person is None:
        desk.keep(None)
        return desk.say("members.gone")
    choices = (
        Choice(value, _text(desk, "officer.members.yes")),
        Choice("no", _text(desk, "officer.members.no")),
    )
    desk.keep({"step": "unmember", "offered": [c.value for c in choices]})
    desk.say(
        "members.confirm",
        step="unmember",
        choices=choices,
        name=person.name or "?",
        group=group.name,
        code=group.join_code,
    )


def _text(desk: Desk, key: str) -> str:
    from config.i18n import t

    return t(desk.language, key)


def resource(
    desk: Desk, member: StaffMember | None, authority_id: int | None, text: str | None
) -> None:
    """``/resource CODE STATE``: mark a resource available, in use or out of service."""
    words = (text or "").split(maxsplit=2)[1:]
    code = words[0] if words else ""
    state = resources.parse_state(words[1]) if len(words) > 1 else None
    staff = _allowed(desk, member, StaffAction.MARK_RESOURCE, authority_id)
    if staff is None:
        return None
    desk.keep(None)
    if not code or state is None:
        return desk.say("resource.usage")
    found = desk.session.scalar(
        select(resources.Resource).where(
            resources.Resource.code == code,
            resources.Resource.authority_id == authority_id,
        )
    )
    if found is None:
        return desk.say("resource.unknown", code=code[:40])
    changed = resources.set_state(
        desk.session, resource=found, state=state, actor=_actor(desk, staff), now=desk.now
    )
    label = _text(desk, f"resources.state.{state.value}")
    desk.say(
        "resource.set" if changed else "resource.same",
        name=found.name,
        code=found.code,
        state=label,
    )
