"""Starting campaigns: audience, one row per recipient, texts, drill markers, order of risk."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from dispatch.campaigns import (
    Audience,
    CampaignError,
    checkin_message,
    start_campaign,
)
from dispatch.clock import ManualClock
from dispatch.models import (
    BlockReason,
    CampaignKind,
    CampaignMode,
    CampaignRecipient,
    ChannelBlock,
    OutboxMessage,
    Priority,
)
from dispatch.segments import count_segments, encoding
from registry.models import NEED_FLAGS, Authority, Channel
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db

MARKERS = {language: t(language, "dispatch.drill_marker") for language in ALL_LANGUAGES}


def start(
    session: Session,
    authority: Authority,
    clock: ManualClock,
    *,
    mode: CampaignMode = CampaignMode.DRILL,
    kind: CampaignKind = CampaignKind.CHECKIN,
    audience: Audience | None = None,
    text: str | None = None,
) -> int:
    campaign = start_campaign(
        session,
        authority=authority,
        kind=kind,
        mode=mode,
        audience=audience or Audience(),
        started_by="test",
        now=clock.now(),
        text=text,
    )
    session.commit()
    return campaign.id


def test_a_drill_check_in_queues_one_message_per_person_in_their_language_with_the_marker(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    people = [
        make_person(language=language, name=f"Dana Levi-{language}") for language in ALL_LANGUAGES
    ]
    with sessions() as session:
        campaign_id = start(session, authority, clock)
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.person_id)).all()
        recipients = session.scalars(select(CampaignRecipient)).all()
    assert len(rows) == len(recipients) == len(people)
    for person, row in zip(people, rows, strict=True):
        assert row.person_id == person.id
        assert row.channel == Channel.TELEGRAM
        assert row.priority == Priority.DRILL
        assert row.campaign_id == campaign_id
        assert row.text.startswith(MARKERS[person.language] + " ")
        assert "Dana," in row.text or "Dana،" in row.text or "Dana፣" in row.text
        assert "Levi" not in row.text  # the first name only
        assert row.buttons == [
            [
                {"text": t(person.language, "dispatch.checkin.ok"), "data": f"c:{campaign_id}:ok"},
                {
                    "text": t(person.language, "dispatch.checkin.help"),
                    "data": f"c:{campaign_id}:help",
                },
            ]
        ]


def test_an_emergency_never_carries_a_drill_marker(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    for language in ALL_LANGUAGES:
        make_person(language=language)
    with sessions() as session:
        start(session, authority, clock, mode=CampaignMode.EMERGENCY)
        texts = session.scalars(select(OutboxMessage.text)).all()
        priorities = set(session.scalars(select(OutboxMessage.priority)))
    assert priorities == {Priority.EMERGENCY}
    for text in texts:
        assert not any(marker in text for marker in MARKERS.values())


def test_the_most_at_risk_go_first_and_no_need_is_ever_named(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    healthy = make_person()
    alone = make_person(needs=("lives_alone",))
    oxygen = make_person(needs=("powered_medical_equipment", "mobility"))
    with sessions() as session:
        start(session, authority, clock, mode=CampaignMode.EMERGENCY)
        ranks = dict(
            session.execute(select(OutboxMessage.person_id, OutboxMessage.risk_rank)).all()
        )
        texts = session.scalars(select(OutboxMessage.text)).all()
    assert ranks[oxygen.id] < ranks[alone.id] < ranks[healthy.id]
    medical_words = {"oxygen", "mobility", "medical", "medication", "bedridden", "wheelchair"}
    for text in texts:
        assert not any(word in text.lower() for word in medical_words | set(NEED_FLAGS))


def test_sms_recipients_get_numbered_choices_and_landlines_go_to_the_ladder(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    sms_only = make_person(telegram=False, language=Language.EN, name="Avi Cohen")
    landline = make_person(telegram=False, sms=False, landline=True)
    with sessions() as session:
        campaign_id = start(session, authority, clock)
        row = session.scalars(select(OutboxMessage)).one()
        no_channel = session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.person_id == landline.id)
        ).one()
    assert row.person_id == sms_only.id and row.channel == Channel.SMS
    assert row.text == (
        "[DRILL] Avi, this is the municipal emergency team. Are you OK?\n1 I'm OK\n2 I need help"
    )
    assert no_channel.channel == Channel.NONE
    assert no_channel.next_step_at == clock.now()  # straight to a buddy's visit at the next sweep
    assert campaign_id


def test_a_channel_a_provider_declared_dead_is_skipped_at_start(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    person = make_person()
    with sessions() as session:
        session.add(
            ChannelBlock(
                person_id=person.id,
                channel=Channel.TELEGRAM,
                reason=BlockReason.BLOCKED,
                address=str(person.telegram_chat_id),
                blocked_at=clock.now(),
            )
        )
        session.commit()
        start(session, authority, clock)
        assert session.scalars(select(OutboxMessage.channel)).one() == Channel.SMS


def test_the_audience_narrows_by_zone_and_need(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    with sessions() as session:
        zones = [z for z in authority.zones]
        zone_a, zone_b = zones[0], zones[1]
    in_zone = make_person(zone_id=zone_a.id, needs=("mobility",))
    make_person(zone_id=zone_a.id)  # no need
    make_person(zone_id=zone_b.id, needs=("mobility",))  # other zone
    with sessions() as session:
        start(
            session, authority, clock, audience=Audience(zones=(zone_a.code,), needs=("mobility",))
        )
        assert session.scalars(select(CampaignRecipient.person_id)).all() == [in_zone.id]
        with pytest.raises(CampaignError, match="unknown zone"):
            start(session, authority, clock, audience=Audience(zones=("atlantis",)))
        session.rollback()
        with pytest.raises(CampaignError, match="unknown need"):
            start(session, authority, clock, audience=Audience(needs=("diagnosis",)))


def test_an_announcement_needs_its_text_and_is_sent_as_written(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    make_person(language=Language.RU)
    with sessions() as session:
        with pytest.raises(CampaignError, match="needs its text"):
            start(session, authority, clock, kind=CampaignKind.ANNOUNCEMENT)
        session.rollback()
        start(
            session, authority, clock, kind=CampaignKind.ANNOUNCEMENT, text="Shelters open at 18:00"
        )
        row = session.scalars(select(OutboxMessage)).one()
    assert row.text == "[УЧЕНИЯ] Shelters open at 18:00"
    assert row.kind == "announcement" and row.buttons is None


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize("reminder", [False, True])
def test_check_in_sms_stays_within_two_segments(language: Language, reminder: bool) -> None:
    text, _ = checkin_message(
        language=language,
        name="Alexandria-Maria Vasquez",
        campaign_id=12345,
        mode=CampaignMode.DRILL,
        channel=Channel.SMS,
        reminder=reminder,
    )
    assert count_segments(text) <= 2, (language, encoding(text), len(text), text)


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_every_other_sms_fits_one_or_two_segments(language: Language) -> None:
    drill = t(language, "dispatch.drill_marker")
    for key in ("ok", "free_text", "late_ok", "help_taken_unnamed"):
        assert count_segments(f"{drill} {t(language, f'dispatch.ack.{key}')}") == 1
    # The help acknowledgement carries the emergency numbers: two segments at most.
    assert count_segments(f"{drill} {t(language, 'dispatch.ack.help')}") <= 2
    assert (
        count_segments(f"{drill} {t(language, 'dispatch.ack.help_taken', volunteer='Yossi')}") == 1
    )
    visit = t(language, "dispatch.task.visit", name="Miriam Ben-David", address="Herzl 12, apt 4")
    labels = [t(language, f"dispatch.task.{k}") for k in ("accept", "done", "not_reached")]
    sms = f"{drill} {visit}\n" + "\n".join(f"{n} {label}" for n, label in enumerate(labels, 1))
    assert count_segments(sms) <= 2, (language, len(sms), sms)
