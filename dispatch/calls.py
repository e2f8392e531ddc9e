"""Phone calls in the check-in ladder, and what every call's end means.

A call is an outbox row of channel VOICE (``kind="call"``) that the worker places like any other
message (the same leases, rate gate, retries and audit), and a :class:`VoiceCall` row from the
moment Twilio takes it. Who is called: when a campaign calls (its authority's ``calls``), a
resident with a landline and no other channel is called first, at the start; a resident whose
Telegram and SMS went unanswered is called when the buddy's visit would be due, before it.

How a call ends decides the next step: 1 answers the check-in "well", 2 answers it "help" (the
help loop, as from any channel); an answering machine, a busy line or no answer is called again
``call_retries`` times, ``call_retry_after`` apart, and then the ladder climbs to the buddy's
visit at once; someone who picked up and pressed nothing ("answered, no key") is not silence:
it is recorded so, and the visit goes at once. The concurrent-calls cap counts the calls in
progress here (:func:`free_lines`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.languages import DEFAULT_LANGUAGE, Language
from dispatch.callbacks import answer_of, first_time, remember_answer
from dispatch.gates import upsert
from dispatch.models import (
    RETRIED_OUTCOMES,
    Answer,
    CallOutcome,
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignRecipient,
    CampaignStatus,
    ChannelBlock,
    ChannelGate,
    OutboxMessage,
    OutboxStatus,
    TaskReason,
    VoiceCall,
)
from dispatch.outbox import enqueue
from registry.models import Authority, Channel, Person, PersonStatus, Zone

CALL_KIND = "call"
# A call still open this long after it was placed has lost its status callback: it no longer
# counts against the concurrent-calls cap.
CALL_LOST_AFTER = timedelta(hours=1)
# Twilio's CallStatus values that end a call, and the outcome each means when no key decided it.
ENDED = {
    "busy": CallOutcome.BUSY,
    "no-answer": CallOutcome.NO_ANSWER,
    "failed": CallOutcome.FAILED,
    "canceled": CallOutcome.FAILED,
    "completed": CallOutcome.NO_KEY,
}
KEYS = {"1": CallOutcome.WELL, "2": CallOutcome.HELP}


def is_machine(answered_by: str | None) -> bool:
    """Twilio's AnsweredBy: ``machine_start``, ``machine_end_beep``..., ``fax``: not a person."""
    return bool(answered_by) and (answered_by or "").startswith(("machine", "fax"))


def callable_person(session: Session, person: Person) -> bool:
    """A phone, an active person, and calls not declared dead for them."""
    return (
        person.phone is not None
        and person.status == PersonStatus.ACTIVE
        and session.get(ChannelBlock, (person.id, Channel.VOICE)) is None
    )


def calls_tried(session: Session, *, campaign_id: int, person_id: int) -> int:
    """How many calls the campaign has queued for the person (placed or not)."""
    return int(
        session.scalar(
            select(func.count()).where(
                OutboxMessage.campaign_id == campaign_id,
                OutboxMessage.person_id == person_id,
                OutboxMessage.channel == Channel.VOICE,
            )
        )
        or 0
    )


def place_call(
    session: Session,
    *,
    campaign: Campaign,
    person: Person,
    now: datetime,
    due_at: datetime | None = None,
    risk_rank: int = 0,
) -> OutboxMessage:
    """Queue a check-in call. The row's text names the script, never a word about the person:
    what the call says is built when Twilio fetches it, in the person's language."""
    from dispatch.campaigns import priority_for

    assert person.phone is not None
    message = enqueue(
        session,
        channel=Channel.VOICE,
        address=person.phone,
        text="checkin",
        person_id=person.id,
        priority=priority_for(campaign.mode),
        kind=CALL_KIND,
        campaign_id=campaign.id,
        due_at=due_at or now,
    )
    message.risk_rank = risk_rank
    return message


def call_deadline(campaign: Campaign, now: datetime) -> datetime:
    """When the ladder climbs anyway if a call's outcome never comes (voice down, a callback
    lost): every try and its wait, and a few minutes for the last call itself."""
    tries = campaign.call_retries + 1
    return now + timedelta(seconds=tries * campaign.call_retry_after + 5 * 60)


# --- the concurrent-calls cap ---------------------------------------------------------------


def free_lines(session: Session, *, cap: int, now: datetime) -> int:
    """How many more calls may start now: ``cap`` less the calls in progress and those being
    placed. The voice gate's row is locked first, so two workers' claims count in turn."""
    session.execute(
        select(ChannelGate.channel).where(ChannelGate.channel == Channel.VOICE).with_for_update()
    ).first()
    in_progress = session.scalar(
        select(func.count()).where(
            VoiceCall.ended_at.is_(None),
            VoiceCall.inbound.is_(False),
            VoiceCall.created_at > now - CALL_LOST_AFTER,
        )
    )
    placing = session.scalar(
        select(func.count()).where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.channel == Channel.VOICE,
        )
    )
    return max(0, cap - int(in_progress or 0) - int(placing or 0))


def calls_placed(session: Session, *, placed: Iterable[tuple[int, str]], now: datetime) -> None:
    """Twilio took these calls (outbox id, CallSid): each is a call in progress from now."""
    for outbox_id, call_sid in placed:
        _call_of(session, outbox_id=outbox_id, call_sid=call_sid, now=now)


def _call_of(session: Session, *, outbox_id: int, call_sid: str, now: datetime) -> VoiceCall | None:
    """The call row of an outbox row, made when first needed (Twilio may fetch the call's TwiML
    before the worker has recorded that it was placed)."""
    call = session.scalars(select(VoiceCall).where(VoiceCall.outbox_id == outbox_id)).first()
    if call is not None:
        if call.call_sid is None:
            call.call_sid = call_sid
        return call
    message = session.get(OutboxMessage, outbox_id)
    if message is None or message.channel != Channel.VOICE:
        return None
    person = session.get(Person, message.person_id) if message.person_id else None
    attempt = 1
    if message.campaign_id is not None and message.person_id is not None:
        attempt = 1 + int(
            session.scalar(
                select(func.count()).where(
                    VoiceCall.campaign_id == message.campaign_id,
                    VoiceCall.person_id == message.person_id,
                )
            )
            or 0
        )
    # Twilio's webhooks and the worker's record may both be first: one row, whoever inserts it.
    _record_call(
        session,
        unique="outbox_id",
        outbox_id=outbox_id,
        call_sid=call_sid,
        inbound=False,
        campaign_id=message.campaign_id,
        person_id=message.person_id,
        zone_id=person.zone_id if person else None,
        attempt=attempt,
        status="queued",
        outcome=CallOutcome.PENDING,
        created_at=now,
    )
    call = session.scalars(
        select(VoiceCall)
        .where(VoiceCall.outbox_id == outbox_id)
        .execution_options(populate_existing=True)
    ).one()
    return call


def _record_call(session: Session, *, unique: str, **values: Any) -> None:
    """Insert a call's row unless one with the same ``unique`` column (its outbox row, or its
    CallSid) is there already."""
    session.execute(
        upsert(session, VoiceCall).values(**values).on_conflict_do_nothing(index_elements=[unique])
    )


# --- during the call --------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """What a call says: in which language, whether it is a drill, whether to ask at all."""

    language: Language
    drill: bool
    ask: bool  # False: hang up (an answering machine, or nothing left to ask)
    visit: bool = True  # someone would go if no key is pressed (else the officers' list)


def call_answered(
    session: Session, *, outbox_id: int, call_sid: str, answered_by: str | None, now: datetime
) -> Script | None:
    """Twilio fetches what an answered call says; None for a call that is not ours."""
    call = _call_of(session, outbox_id=outbox_id, call_sid=call_sid, now=now)
    if call is None or call.call_sid != call_sid:
        return None
    person = session.get(Person, call.person_id) if call.person_id else None
    campaign = session.get(Campaign, call.campaign_id) if call.campaign_id else None
    language = person.language if person else DEFAULT_LANGUAGE
    drill = campaign is not None and campaign.mode == CampaignMode.DRILL
    call.status = "in-progress"
    call.answered_at = call.answered_at or now
    call.answered_by = (answered_by or "")[:24] or None
    if is_machine(answered_by):
        call.outcome = CallOutcome.MACHINE
        return Script(language=language, drill=drill, ask=False)
    ask = person is not None and campaign is not None
    return Script(
        language=language,
        drill=drill,
        ask=ask,
        visit=not ask
        or _visit_would_go(
            session,
            person_id=call.person_id,
            campaign_id=campaign.id if campaign else None,
            now=now,
        ),
    )


def _visit_would_go(
    session: Session, *, person_id: int | None, campaign_id: int | None, now: datetime
) -> bool:
    """Whether no key pressed sends someone to the resident (the goodbye says so only then)."""
    from dispatch.escalation import visit_would_go

    if person_id is None:
        return False
    return visit_would_go(session, resident_id=person_id, campaign_id=campaign_id, now=now)


def no_key_prompt(visit: bool) -> str:
    """The goodbye after no key: a volunteer will come by only when one would; else what is
    true (the resident is on the municipality's emergency team's list, a "no buddy" alert)."""
    return "bye_no_key" if visit else "no_buddy.bye_no_key"


def keys_pressed(
    session: Session, *, outbox_id: int, call_sid: str, digits: str, now: datetime
) -> tuple[Language, CallOutcome | None] | None:
    """A key pressed in a check-in call: 1 or 2 answer the check-in (as the buttons do, help
    entering the help loop); anything else asks again (None). None for a call not ours."""
    call = session.scalars(
        select(VoiceCall).where(VoiceCall.outbox_id == outbox_id, VoiceCall.call_sid == call_sid)
    ).first()
    if call is None:
        return None
    person = session.get(Person, call.person_id) if call.person_id else None
    language = person.language if person else DEFAULT_LANGUAGE
    outcome = KEYS.get(digits.strip()[:1])
    if outcome is None or person is None or call.campaign_id is None:
        return language, None
    if first_time(session, key=callback_key("keys", call_sid), channel=Channel.VOICE, now=now):
        # The call's one answer (its Gather ends the call): a repeat is answered the same.
        call.outcome = outcome
        answer_checkin(
            session, person=person, campaign_id=call.campaign_id, outcome=outcome, now=now
        )
    return language, outcome


def answer_checkin(
    session: Session, *, person: Person, campaign_id: int, outcome: CallOutcome, now: datetime
) -> None:
    """Pressing 1 or 2 is the check-in's answer, as a button press is: the same entry point."""
    from dispatch.responses import take_campaign_reply

    value = Answer.OK if outcome == CallOutcome.WELL else Answer.HELP
    # Channel NONE: the goodbye said it; any written acknowledgement goes on the person's own
    # channel (Telegram or SMS), never as another call.
    take_campaign_reply(
        session,
        person=person,
        channel=Channel.NONE,
        callback_data=f"c:{campaign_id}:{value.value}",
        now=now,
    )


def call_ended(
    session: Session,
    *,
    outbox_id: int,
    call_sid: str,
    status: str,
    answered_by: str | None,
    now: datetime,
) -> VoiceCall | None:
    """Twilio's status callback. A call that ended is counted by its outcome, and the ladder
    takes its next step (try again, or the buddy's visit)."""
    call = _call_of(session, outbox_id=outbox_id, call_sid=call_sid, now=now)
    if call is None or call.call_sid != call_sid:
        return None
    if status in ENDED and not first_time(
        session, key=callback_key("status", call_sid, status), channel=Channel.VOICE, now=now
    ):
        return call  # the end of this call, told again: counted once
    call.status = status[:24]
    if answered_by:
        call.answered_by = answered_by[:24]
    if status == "in-progress":
        call.answered_at = call.answered_at or now
        return call
    if status not in ENDED or call.ended_at is not None:
        return call
    call.ended_at = now
    if call.outcome == CallOutcome.PENDING:
        machine = is_machine(call.answered_by)
        call.outcome = CallOutcome.MACHINE if machine else ENDED[status]
    message = session.get(OutboxMessage, call.outbox_id) if call.outbox_id else None
    if message is not None and call.answered_at is not None and message.status == OutboxStatus.SENT:
        message.status = OutboxStatus.DELIVERED
        message.delivered_at = now
    if not call.inbound:
        _next_step(session, call=call, now=now)
    return call


def _next_step(session: Session, *, call: VoiceCall, now: datetime) -> None:
    if call.campaign_id is None or call.person_id is None:
        return
    campaign = session.get(Campaign, call.campaign_id)
    person = session.get(Person, call.person_id)
    recipient = session.scalars(
        select(CampaignRecipient).where(
            CampaignRecipient.campaign_id == call.campaign_id,
            CampaignRecipient.person_id == call.person_id,
        )
    ).first()
    if (
        campaign is None
        or person is None
        or recipient is None
        or campaign.status != CampaignStatus.ACTIVE
        or recipient.answer != Answer.PENDING
        or recipient.step >= 2
    ):
        return
    if call.outcome in RETRIED_OUTCOMES and call.attempt <= campaign.call_retries:
        due = now + timedelta(seconds=campaign.call_retry_after)
        place_call(
            session,
            campaign=campaign,
            person=person,
            now=now,
            due_at=due,
            risk_rank=recipient.risk_rank,
        )
        recipient.next_step_at = max(recipient.next_step_at or now, call_deadline(campaign, now))
        return
    # Tries used up, no key, or a call that failed: the buddy's visit now.
    from dispatch.escalation import climb_to_visit

    climb_to_visit(
        session,
        recipient=recipient,
        campaign=campaign,
        resident=person,
        reason=TaskReason.NO_ANSWER,
        now=now,
    )


# --- someone calls the Hosen number ----------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is calling: a registered person (and their open check-in, if any), or nobody we know."""

    person: Person | None
    campaign_id: int | None
    language: Language
    drill: bool = False  # the open check-in is a drill's
    visit: bool = True  # someone would go if no key is pressed (see Script.visit)


def inbound_call(
    session: Session, *, call_sid: str, phone: str, default: Language, now: datetime
) -> Caller:
    """An incoming call, recorded; the caller recognised by their phone when it is registered."""
    person = session.scalars(
        select(Person)
        .where(Person.phone == phone, Person.status == PersonStatus.ACTIVE)
        .order_by(Person.id)
        .limit(1)
    ).first()
    campaign_id = None
    if person is not None:
        campaign_id = session.scalar(
            select(CampaignRecipient.campaign_id)
            .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
            .where(
                CampaignRecipient.person_id == person.id,
                CampaignRecipient.answer == Answer.PENDING,
                Campaign.status == CampaignStatus.ACTIVE,
                Campaign.kind == CampaignKind.CHECKIN,
            )
            .order_by(Campaign.started_at.desc())
            .limit(1)
        )
    # Twilio asking again (or two webhooks at once): one row, whoever inserts it.
    _record_call(
        session,
        unique="call_sid",
        call_sid=call_sid,
        inbound=True,
        campaign_id=campaign_id,
        person_id=person.id if person else None,
        zone_id=person.zone_id if person else None,
        attempt=1,
        status="in-progress",
        outcome=CallOutcome.PENDING,
        created_at=now,
        answered_at=now,
    )
    campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
    return Caller(
        person=person,
        campaign_id=campaign_id,
        language=person.language if person else default,
        drill=campaign is not None and campaign.mode == CampaignMode.DRILL,
        visit=campaign is None
        or _visit_would_go(
            session, person_id=person.id if person else None, campaign_id=campaign_id, now=now
        ),
    )


def inbound_keys(
    session: Session,
    *,
    call_sid: str,
    phone: str,
    digits: str,
    default: Language,
    authority_id: int | None,
    now: datetime,
) -> tuple[Language, str]:
    """A key pressed by an inbound caller; returns the language and the prompt to end with.

    With an open check-in, 1 and 2 answer it. Otherwise 2 asks for help, as in a check-in (a
    help request with the caller's number: a caller we do not know is registered with only
    that number, so the officer on duty can call back), 1 hears how to register. A key that
    acts (1 or 2) is claimed under the CallSid: Twilio's repeat is answered the same and does
    nothing twice."""
    key = digits.strip()[:1]
    claim = callback_key("inbound_keys", call_sid)
    if key in KEYS and not first_time(session, key=claim, channel=Channel.VOICE, now=now):
        # A repeat of the key that ended the call: said the same, done nothing twice.
        said = answer_of(session, key=claim)
        return Language(said.get("language", default)), str(said.get("said", "register"))
    language, prompt = _inbound_key(
        session, call_sid=call_sid, phone=phone, key=key, default=default,
        authority_id=authority_id, now=now,
    )  # fmt: skip
    if key in KEYS:
        remember_answer(session, key=claim, answer={"language": language.value, "said": prompt})
    return language, prompt


def _inbound_key(
    session: Session,
    *,
    call_sid: str,
    phone: str,
    key: str,
    default: Language,
    authority_id: int | None,
    now: datetime,
) -> tuple[Language, str]:
    from dispatch.help import request_help
    from dispatch.models import HelpNeed
    from registry.models import PhoneKind, Source

    # The call is recorded here if its start was not (the database was away then).
    caller = inbound_call(session, call_sid=call_sid, phone=phone, default=default, now=now)
    call = session.scalars(select(VoiceCall).where(VoiceCall.call_sid == call_sid)).first()
    if caller.person is not None and caller.campaign_id is not None and key in KEYS:
        if call is not None:
            call.outcome = KEYS[key]
        answer_checkin(
            session,
            person=caller.person,
            campaign_id=caller.campaign_id,
            outcome=KEYS[key],
            now=now,
        )
        return caller.language, "bye_well" if key == "1" else "bye_help"
    if key == "2":
        person = caller.person
        if person is None:
            if authority_id is None:
                return caller.language, "register"
            person = Person(
                authority_id=authority_id,
                phone=phone,
                phone_kind=PhoneKind.UNKNOWN,
                language=caller.language,
                channel=Channel.NONE,
                source=Source.VOICE,
                needs_help=True,
            )
            session.add(person)
            session.flush()
        request_help(session, resident=person, need=HelpNeed.OTHER, detail=None, now=now)
        if call is not None:
            call.outcome = CallOutcome.HELP
            call.person_id = person.id
        return caller.language, "bye_help"
    return caller.language, "register"


def help_authority(session: Session) -> int | None:
    """Where a help request from an unknown caller is filed: the first authority (a caller's
    number tells no town; the officers on duty there take it on)."""
    return session.scalar(select(Authority.id).order_by(Authority.id).limit(1))


# --- callbacks kept while the database was away ----------------------------------------------

# What the voice webhooks keep in the spool (bots.spool, bots.voice) while the database is away.
KEPT_EVENTS = ("unserved", "keys", "status", "inbound_keys")


def callback_key(event: str, call_sid: str, status: str = "") -> str:
    """The key under which a call's callback is applied once (:mod:`dispatch.callbacks`): one
    answer a call (a key is the last thing a call takes), one callback per status."""
    what = f"status:{status[:24]}" if event == "status" else event
    return f"voice:{call_sid[:40]}:{what}"


def call_unserved(session: Session, *, outbox_id: int, call_sid: str, now: datetime) -> None:
    """The call was answered while the database was away: the callee heard "we will call you
    again", and the call ends as UNSERVED, which the ladder tries again like a busy line."""
    call = _call_of(session, outbox_id=outbox_id, call_sid=call_sid, now=now)
    if call is None or call.call_sid != call_sid:
        return
    if not first_time(
        session, key=callback_key("unserved", call_sid), channel=Channel.VOICE, now=now
    ):
        return
    call.answered_at = call.answered_at or now
    if call.outcome == CallOutcome.PENDING:
        call.outcome = CallOutcome.UNSERVED


def replay_callback(
    session: Session, *, event: str, data: Mapping[str, Any], now: datetime
) -> None:
    """Apply a voice callback that waited in the spool, as it would have been applied when it
    came (``now`` is when it came)."""
    if event == "unserved":
        call_unserved(session, outbox_id=int(data["outbox"]), call_sid=data["sid"], now=now)
    elif event == "keys":
        keys_pressed(
            session,
            outbox_id=int(data["outbox"]),
            call_sid=data["sid"],
            digits=data["digits"],
            now=now,
        )
    elif event == "status":
        call_ended(
            session,
            outbox_id=int(data["outbox"]),
            call_sid=data["sid"],
            status=data["status"],
            answered_by=data.get("answered_by"),
            now=now,
        )
    elif event == "inbound_keys":
        inbound_keys(
            session,
            call_sid=data["sid"],
            phone=data["phone"],
            digits=data["digits"],
            default=Language(data["language"]),
            authority_id=help_authority(session),
            now=now,
        )
    else:
        raise ValueError(f"unknown voice event {event!r}")


# --- the drill report ------------------------------------------------------------------------

REPORTED = (
    CallOutcome.WELL,
    CallOutcome.HELP,
    CallOutcome.NO_KEY,
    CallOutcome.MACHINE,
    CallOutcome.BUSY,
    CallOutcome.NO_ANSWER,
    CallOutcome.FAILED,
    CallOutcome.UNSERVED,
    CallOutcome.PENDING,  # placed and not ended yet: an open campaign's calls still ringing
)


def calls_by_zone(session: Session, *, campaign_id: int) -> dict[str, Counter[CallOutcome]]:
    """The campaign's calls, counted by outcome, per zone code (``""``: a call to nobody's zone)."""
    rows = session.execute(
        select(Zone.code, VoiceCall.outcome, func.count())
        .select_from(VoiceCall)
        .outerjoin(Zone, Zone.id == VoiceCall.zone_id)
        .where(VoiceCall.campaign_id == campaign_id, VoiceCall.inbound.is_(False))
        .group_by(Zone.code, VoiceCall.outcome)
    ).all()
    counted: dict[str, Counter[CallOutcome]] = {}
    for code, outcome, count in rows:
        counted.setdefault(code or "", Counter())[CallOutcome(outcome)] += int(count)
    return counted


def call_counts(session: Session, *, campaign_id: int) -> dict[str, dict[str, int]]:
    """:func:`calls_by_zone` as plain data for the report: zone code -> outcome -> calls (every
    outcome of :data:`REPORTED` present, zero or not). Every call placed is in one cell."""
    return {
        zone: {outcome.value: counted[outcome] for outcome in REPORTED}
        for zone, counted in sorted(calls_by_zone(session, campaign_id=campaign_id).items())
    }
