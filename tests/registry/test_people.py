"""The registry's people services on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.languages import Language
from registry.errors import ConsentRequired, RegistryError
from registry.models import (
    AssignmentStatus,
    AuditEntry,
    Authority,
    BuddyAssignment,
    Channel,
    Consent,
    ConsentGiver,
    ConsentKind,
    Person,
    PersonStatus,
    PhoneKind,
    PhoneSource,
    RoleAssignment,
    Source,
)
from registry.people import (
    NeedsDetails,
    PersonDetails,
    Registration,
    VolunteerDetails,
    ensure_may_take_role,
    erase,
    opt_in,
    opt_out,
    record_consent,
    register_person,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PHONE = normalise_phone("052-555-1234", region="IL")


def register(
    session: Session, authority: Authority, details: PersonDetails, source: Source = Source.SMS
) -> Registration:
    """register_person as every test here calls it: one actor, one moment."""
    return register_person(
        session, authority=authority, details=details, source=source, actor="t", now=NOW
    )


def _details(directory: Directory, authority: Authority, **overrides: object) -> PersonDetails:
    base: dict[str, object] = {
        "name": "מרים כהן",
        "phone": PHONE,
        "phone_source": PhoneSource.SMS,  # she texted us from it
        "language": Language.HE,
        "channel": Channel.SMS,
        "birth_year": 1941,
        "zone": directory.zone(authority, "kt-vatika"),
        "address": "רחוב הרצל 12",
        "needs": NeedsDetails(lives_alone=True, powered_medical_equipment=True),
    }
    base.update(overrides)
    return PersonDetails(**base)  # type: ignore[arg-type]


def test_register_is_idempotent(
    session: Session, directory: Directory, authority: Authority
) -> None:
    first = register(session, authority, _details(directory, authority))
    assert first.created and "needs" in first.changed
    again = register(session, authority, _details(directory, authority))
    assert not again.created and again.changed == []
    assert again.person.id == first.person.id
    session.commit()
    assert session.scalar(select(func.count()).select_from(Person)) == 1
    actions = list(session.scalars(select(AuditEntry.action)))
    assert actions == ["person.create"], "an unchanged re-registration writes no audit entry"


def test_update_changes_only_what_is_given(
    session: Session, directory: Directory, authority: Authority
) -> None:
    person = register(session, authority, _details(directory, authority)).person
    result = register(
        session,
        authority,
        PersonDetails(phone=PHONE, phone_source=PhoneSource.SMS, language=Language.RU),
    )
    assert result.changed == ["language"]
    assert person.name == "מרים כהן" and person.needs is not None and person.needs.lives_alone


def test_landline_cannot_be_an_sms_channel(
    session: Session, directory: Directory, authority: Authority
) -> None:
    landline = normalise_phone("08-6123456", region="IL")
    person = register(
        session, authority, _details(directory, authority, phone=landline), source=Source.IMPORT
    ).person
    assert person.phone_kind == PhoneKind.LANDLINE
    assert person.channel == Channel.NONE
    assert not person.can_receive_sms


def test_same_person_on_telegram_and_sms_is_merged(
    session: Session, directory: Directory, authority: Authority
) -> None:
    by_sms = register(session, authority, _details(directory, authority)).person
    record_consent(
        session,
        person=by_sms,
        kind=ConsentKind.REGISTRATION,
        version="1",
        language=Language.HE,
        text="...",
        channel=Source.SMS,
        given_by=ConsentGiver.SELF,
        actor="t",
        now=NOW,
    )
    by_telegram = register(
        session,
        authority,
        PersonDetails(
            name="Miriam",
            telegram_chat_id=555001,
            language=Language.HE,
            channel=Channel.TELEGRAM,
            volunteer=VolunteerDetails(skills=("first_aid",), languages=("he", "ru")),
        ),
        source=Source.TELEGRAM,
    ).person
    assert by_telegram.id != by_sms.id
    # Now the Telegram user shares the phone number the SMS registration used.
    merged = register(
        session,
        authority,
        PersonDetails(phone=PHONE, phone_source=PhoneSource.CONTACT, telegram_chat_id=555001),
        source=Source.TELEGRAM,
    )
    session.commit()
    people = list(session.scalars(select(Person)))
    assert len(people) == 1
    person = people[0]
    assert merged.merged_from is not None
    assert person.telegram_chat_id == 555001 and person.phone == PHONE.e164
    assert person.channel == Channel.TELEGRAM
    assert person.is_volunteer and person.needs_help
    assert person.volunteer is not None and person.volunteer.skills == ["first_aid"]
    assert person.needs is not None and person.needs.powered_medical_equipment
    assert (
        session.scalar(
            select(func.count()).select_from(Consent).where(Consent.person_id == person.id)
        )
        == 1
    )


def test_zone_of_another_authority_is_refused(
    session: Session, directory: Directory, authority: Authority
) -> None:
    other = directory.authorities["emek-tamar"]
    foreign_zone = directory.zone(other, "et-tel-zaytun")
    with pytest.raises(RegistryError) as caught:
        register(session, authority, _details(directory, authority, zone=foreign_zone))
    assert caught.value.key == "zone.unknown"


def test_minor_needs_guardian_consent_before_a_role(
    session: Session, directory: Directory, authority: Authority
) -> None:
    minor = register(
        session,
        authority,
        PersonDetails(
            name="Noa",
            telegram_chat_id=777,
            birth_year=2011,
            volunteer=VolunteerDetails(),
            channel=Channel.TELEGRAM,
        ),
        source=Source.TELEGRAM,
    ).person
    with pytest.raises(ConsentRequired) as caught:
        ensure_may_take_role(session, minor, now=NOW)
    assert caught.value.key == "role.guardian_consent_required"
    assert "18" in caught.value.render(Language.AR)
    record_consent(
        session,
        person=minor,
        kind=ConsentKind.GUARDIAN,
        version="1",
        language=Language.HE,
        text="guardian text",
        channel=Source.TELEGRAM,
        given_by=ConsentGiver.GUARDIAN,
        guardian_name="Dana",
        actor="t",
        now=NOW,
    )
    ensure_may_take_role(session, minor, now=NOW)
    adult = register(
        session,
        authority,
        PersonDetails(
            name="Avi", telegram_chat_id=778, birth_year=1990, volunteer=VolunteerDetails()
        ),
        source=Source.TELEGRAM,
    ).person
    ensure_may_take_role(session, adult, now=NOW)
    unknown_age = register(
        session,
        authority,
        PersonDetails(name="X", telegram_chat_id=779, volunteer=VolunteerDetails()),
        source=Source.TELEGRAM,
    ).person
    with pytest.raises(ConsentRequired):
        ensure_may_take_role(session, unknown_age, now=NOW)


def _volunteer_with_assignments(
    session: Session, directory: Directory, authority: Authority
) -> tuple[Person, Person]:
    resident = register(session, authority, _details(directory, authority)).person
    volunteer = register(
        session,
        authority,
        PersonDetails(
            name="Yossi",
            telegram_chat_id=4242,
            birth_year=1980,
            volunteer=VolunteerDetails(),
            channel=Channel.TELEGRAM,
        ),
        source=Source.TELEGRAM,
    ).person
    session.add(BuddyAssignment(resident_id=resident.id, volunteer_id=volunteer.id, rank=1))
    session.add(
        RoleAssignment(person_id=volunteer.id, authority_id=authority.id, role_code="driver")
    )
    session.flush()
    return resident, volunteer


def test_opt_out_stops_messages_and_releases_volunteer_duties(
    session: Session, directory: Directory, authority: Authority
) -> None:
    _, volunteer = _volunteer_with_assignments(session, directory, authority)
    assert opt_out(session, volunteer, actor="t", now=NOW)
    assert not opt_out(session, volunteer, actor="t", now=NOW), "a second STOP changes nothing"
    session.commit()
    assert volunteer.status == PersonStatus.OPTED_OUT and not volunteer.reachable
    statuses = set(session.scalars(select(BuddyAssignment.status))) | set(
        session.scalars(select(RoleAssignment.status))
    )
    assert statuses == {AssignmentStatus.RELEASED}
    assert opt_in(session, volunteer, actor="t", now=NOW)
    assert volunteer.status == PersonStatus.ACTIVE


def test_erasure_removes_personal_data_and_keeps_anonymous_counts(
    session: Session, directory: Directory, authority: Authority
) -> None:
    resident, _ = _volunteer_with_assignments(session, directory, authority)
    record_consent(
        session,
        person=resident,
        kind=ConsentKind.HEALTH_DATA,
        version="1",
        language=Language.HE,
        text="...",
        channel=Source.SMS,
        given_by=ConsentGiver.FAMILY,
        guardian_name="בן משפחה",
        actor="t",
        now=NOW,
    )
    zone_id = resident.zone_id
    erase(session, resident, actor="t", now=NOW)
    session.commit()
    session.expire_all()
    row = session.get(Person, resident.id)
    assert row is not None
    for attr in (
        "name",
        "phone",
        "telegram_chat_id",
        "birth_year",
        "address",
        "lat",
        "lon",
        "external_ref",
    ):
        assert getattr(row, attr) is None, attr
    assert row.needs is None and row.volunteer is None
    assert row.status == PersonStatus.ERASED
    assert row.zone_id == zone_id and row.needs_help, "anonymous counts per zone survive"
    consent = session.scalars(select(Consent).where(Consent.person_id == row.id)).one()
    assert consent.guardian_name is None and consent.withdrawn_at is not None
    assert set(session.scalars(select(BuddyAssignment.status))) == {AssignmentStatus.RELEASED}
    # The same phone can register again as a new person.
    again = register(session, authority, _details(directory, authority))
    assert again.created and again.person.id != row.id


def test_audit_details_hold_no_personal_data(
    session: Session, directory: Directory, authority: Authority
) -> None:
    _volunteer_with_assignments(session, directory, authority)
    session.commit()
    for entry in session.scalars(select(AuditEntry)):
        blob = repr(entry.detail)
        for secret in ("מרים", "052", "5551234", "הרצל", "Yossi"):
            assert secret not in blob, (entry.action, blob)


# ---------------------------------------------------------------- the batch path (imports)


def _phone(n: int) -> object:
    return normalise_phone(f"052-555-{n:04d}", region="IL")


def test_register_people_follows_register_persons_rules(
    session: Session, directory: Directory, authority: Authority
) -> None:
    from registry.people import register_people

    single = register(session, authority, _details(directory, authority))
    batch = [
        _details(directory, authority, phone=_phone(n), external_ref=f"w:{n}", channel=None)
        for n in range(1, 4)
    ]
    results = register_people(
        session, authority=authority, batch=batch, source=Source.IMPORT, actor="t", now=NOW
    )
    session.commit()
    assert [r.created for r in results] == [True, True, True]
    assert results[0].changed == sorted([*single.changed, "external_ref"])
    created = session.get(Person, results[0].person.id)
    assert created is not None and created.needs is not None
    assert created.needs.flags() == ["lives_alone", "powered_medical_equipment"]
    assert (created.status, created.phone_kind) == (PersonStatus.ACTIVE, PhoneKind.MOBILE)
    assert (
        created.channel
        == register(
            session,
            authority,
            _details(directory, authority, phone=_phone(9), channel=None),
            source=Source.IMPORT,
        ).person.channel
    )

    again = register_people(
        session, authority=authority, batch=batch, source=Source.IMPORT, actor="t", now=NOW
    )
    session.commit()
    assert [(r.created, r.changed) for r in again] == [(False, [])] * 3
    creations = select(func.count()).select_from(AuditEntry)
    assert session.scalar(creations.where(AuditEntry.action == "person.create")) == 5


def test_register_people_updates_merges_and_keeps_the_first_reference(
    session: Session, directory: Directory, authority: Authority
) -> None:
    from registry.people import register_people

    by_ref = register(
        session, authority, PersonDetails(name="A", external_ref="welfare:1"), source=Source.IMPORT
    ).person
    by_phone = register(
        session,
        authority,
        PersonDetails(name="B", phone=PHONE, phone_source=PhoneSource.CONTACT, telegram_chat_id=77),
        source=Source.TELEGRAM,
    ).person
    session.commit()
    results = register_people(
        session,
        authority=authority,
        batch=[
            PersonDetails(name="A B", phone=PHONE, external_ref="welfare:1"),
            PersonDetails(name="C", phone=_phone(5), external_ref="volunteers:1"),
            PersonDetails(name="C2", phone=_phone(5), external_ref="volunteers:1"),
        ],
        source=Source.IMPORT,
        actor="t",
        now=NOW,
    )
    session.commit()
    assert results[0].merged_from == by_phone.id and results[0].person.id == by_ref.id
    assert results[1].created and results[2].person is results[1].person
    merged = session.get(Person, by_ref.id)
    assert merged is not None and merged.telegram_chat_id == 77 and merged.name == "A B"
    c = session.scalars(select(Person).where(Person.phone == _phone(5).e164)).one()  # type: ignore[attr-defined]
    assert c.name == "C2"

    register(
        session,
        authority,
        PersonDetails(phone=PHONE, external_ref="volunteers:9"),
        source=Source.IMPORT,
    )
    assert merged.external_ref == "welfare:1", (
        "a second list's reference does not replace the first"
    )


def test_a_typed_phone_never_joins_or_reveals_another_record(
    session: Session, directory: Directory, authority: Authority
) -> None:
    resident = register(session, authority, _details(directory, authority)).person
    typed = register(
        session,
        authority,
        PersonDetails(name="Intruder", phone=PHONE, telegram_chat_id=4242),
        source=Source.TELEGRAM,
    )
    session.commit()
    # A separate record, without the number; the resident's record is untouched.
    assert typed.created and typed.phone_conflict and typed.merged_from is None
    assert typed.person.id != resident.id and typed.person.phone is None
    assert typed.person.needs is None
    session.refresh(resident)
    assert resident.phone == PHONE.e164 and resident.telegram_chat_id is None


@pytest.mark.parametrize("source", [PhoneSource.CONTACT, PhoneSource.SMS, PhoneSource.CODE])
def test_a_proven_phone_takes_the_number_from_a_record_that_only_typed_it(
    session: Session, directory: Directory, authority: Authority, source: PhoneSource
) -> None:
    squatter = register(
        session,
        authority,
        PersonDetails(name="Intruder", phone=PHONE, telegram_chat_id=4242),
        source=Source.TELEGRAM,
    ).person
    assert squatter.phone_source == PhoneSource.TYPED and squatter.phone_verified_at is None
    owner = register(
        session,
        authority,
        _details(directory, authority, phone_source=source, telegram_chat_id=None),
        source=Source.SMS,
    )
    session.commit()
    assert owner.created and owner.displaced == [squatter.id]
    assert owner.person.phone == PHONE.e164 and owner.person.phone_verified_at == NOW
    session.refresh(squatter)
    assert squatter.phone is None and squatter.phone_disputed_at == NOW
    assert squatter.needs is None and squatter.telegram_chat_id == 4242
    actions = session.scalars(select(AuditEntry.action).where(AuditEntry.person_id == squatter.id))
    assert "phone.displaced" in list(actions)


def test_a_typed_phone_is_confirmed_later_without_a_new_record(
    session: Session, directory: Directory, authority: Authority
) -> None:
    typed = register(
        session,
        authority,
        PersonDetails(name="Olga", phone=PHONE, telegram_chat_id=4242),
        source=Source.TELEGRAM,
    ).person
    again = register(
        session,
        authority,
        PersonDetails(phone=PHONE, phone_source=PhoneSource.CODE, telegram_chat_id=4242),
        source=Source.TELEGRAM,
    )
    assert again.person is typed and again.changed == ["phone_verified"]
    assert typed.phone_source == PhoneSource.CODE and typed.phone_verified_at == NOW
    # A list naming the same number later neither lowers nor resets that proof.
    listed = register(
        session,
        authority,
        PersonDetails(phone=PHONE, external_ref="welfare:7"),
        source=Source.IMPORT,
    )
    assert listed.person is typed and typed.phone_source == PhoneSource.CODE
