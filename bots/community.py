"""Staff commands for communities and resources, over Telegram and SMS: two rows of the officers'
step table (:data:`bots.officers.STEPS`) and one command.

``/members``: a coordinator sees their groups' members and takes one out (a button or the
number by SMS, then a confirmation). ``/resource CODE available|busy|out``: staff mark a
community resource's state. The rules (who manages which group, what a state is) live in
``registry.groups`` and ``registry.resources``; this module asks and answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from bots.steps import Answer
from config.i18n import t
from dispatch.channels.base import Choice
from registry import groups, resources
from registry.models import Group, Person
from registry.staff import NotAuthorized, StaffAction, StaffMember, authorize

if TYPE_CHECKING:
    from bots.officers import Desk

MEMBERS = "/members"
RESOURCE = "/resource"
MAX_MEMBERS = 40
NO = "no"


def _actor(desk: Desk, member: StaffMember) -> str:
    return f"{desk.channel.value}:staff:{member.id}"


def _managed(desk: Desk) -> list[Group]:
    return groups.groups_managed(desk.session, desk.member) if desk.member is not None else []


def may_manage_members(desk: Desk) -> bool:
    """The row guard of ``/members``: authorized (and audited) for the first group they manage;
    refused politely, the flow ended, when not."""
    managed = _managed(desk)
    try:
        desk.member = authorize(
            desk.session,
            channel=desk.channel,
            address=desk.address,
            action=StaffAction.MANAGE_GROUP_MEMBERS,
            authority_id=desk.authority.id if desk.authority else None,
            group_id=managed[0].id if managed else None,
            now=desk.now,
        )
    except NotAuthorized:
        desk.draft.rest()
        desk.refuse()
        return False
    desk.groups = [group.id for group in managed]
    return True


# --- the MEMBER step: pick a member --------------------------------------------------------------


def ask_members(desk: Desk) -> None:
    from bots.officers import OfficerStep, fitting_choices

    managed = _managed(desk)
    choices: list[Choice] = []
    count = 0
    for group in managed:
        for row in groups.members(desk.session, group, year=desk.now.year):
            count += 1
            if len(choices) < MAX_MEMBERS:
                mark = "★ " if row.coordinator else ""
                choices.append(Choice(f"{group.id}-{row.person_id}", f"{mark}{row.name}"))
    if not count:
        desk.draft.rest()
        return desk.say("members.none")
    kept = fitting_choices(desk, choices)
    desk.draft.step = OfficerStep.MEMBER
    desk.draft.offered = [choice.value for choice in kept]
    title = ", ".join(group.name for group in managed)
    desk.say(
        "members.head", step=OfficerStep.MEMBER.value, choices=tuple(kept), group=title, count=count
    )


def member_choices(desk: Desk) -> tuple[Choice, ...]:
    """The list offered last, as the members are named now (numbers stay those shown)."""
    choices = []
    for value in desk.draft.offered:
        found = _chosen(desk, value)
        if found is not None:
            choices.append(Choice(value, found[1].name or "?"))
    return tuple(choices)


def take_member(desk: Desk, answer: Answer) -> None:
    from bots.officers import OfficerStep

    if _chosen(desk, answer.picked) is None:
        return gone(desk)
    desk.draft.member = answer.picked
    desk.draft.step = OfficerStep.UNMEMBER
    return ask_unmember(desk)


def gone(desk: Desk) -> None:
    """A member or a list that is no longer there: say so, and the flow ends."""
    desk.draft.rest()
    desk.say("members.gone")


def _chosen(desk: Desk, value: str) -> tuple[Group, Person] | None:
    """The group (one they manage) and the person a ``group-person`` value names."""
    group_text, _, person_text = value.partition("-")
    group = next((g for g in _managed(desk) if str(g.id) == group_text), None)
    person = desk.session.get(Person, int(person_text)) if person_text.isdecimal() else None
    return (group, person) if group is not None and person is not None else None


# --- the UNMEMBER step: confirm -------------------------------------------------------------------


def ask_unmember(desk: Desk) -> None:
    from bots.officers import OfficerStep

    found = _chosen(desk, desk.draft.member or "")
    if found is None:
        return gone(desk)
    group, person = found
    desk.say(
        "members.confirm",
        step=OfficerStep.UNMEMBER.value,
        choices=unmember_choices(desk),
        name=person.name or "?",
        group=group.name,
        code=group.join_code,
    )


def unmember_choices(desk: Desk) -> tuple[Choice, ...]:
    return (
        Choice(desk.draft.member or "", t(desk.language, "officer.members.yes")),
        Choice(NO, t(desk.language, "officer.members.no")),
    )


def take_unmember(desk: Desk, answer: Answer) -> None:
    value = answer.picked
    desk.draft.rest()
    if value == NO or desk.member is None:
        return desk.say("members.kept")
    group_text, _, person_text = value.partition("-")
    if not (group_text.isdecimal() and person_text.isdecimal()):
        return desk.say("members.kept")
    done = groups.remove_by_staff(
        desk.session,
        member=desk.member,
        group_id=int(group_text),
        person_id=int(person_text),
        actor=_actor(desk, desk.member),
        now=desk.now,
    )
    if done is None:
        return desk.say("members.gone")
    group, person = done
    return desk.say("members.removed", name=person.name or "?", group=group.name)


# --- /resource ------------------------------------------------------------------------------------


def resource(desk: Desk, text: str | None) -> None:
    """``/resource CODE STATE`` (already authorized for MARK_RESOURCE): mark a resource available,
    in use or out of service."""
    words = (text or "").split(maxsplit=2)[1:]
    code = words[0] if words else ""
    state = resources.parse_state(words[1]) if len(words) > 1 else None
    desk.draft.rest()
    if not code or state is None or desk.member is None:
        return desk.say("resource.usage")
    authority_id = desk.authority.id if desk.authority else None
    found = desk.session.scalar(
        select(resources.Resource).where(
            resources.Resource.code == code,
            resources.Resource.authority_id == authority_id,
        )
    )
    if found is None:
        return desk.say("resource.unknown", code=code[:40])
    changed = resources.set_state(
        desk.session, resource=found, state=state, actor=_actor(desk, desk.member), now=desk.now
    )
    desk.say(
        "resource.set" if changed else "resource.same",
        name=found.name,
        code=found.code,
        state=t(desk.language, f"resources.state.{state.value}"),
    )
