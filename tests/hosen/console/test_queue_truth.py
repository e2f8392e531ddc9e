"""The console's help queue tells the officer only what is true, on SQLite and PostgreSQL: an
alert whose resident has since answered "I'm OK" says so (it stays open, with its buttons), and
taking the alert of a resident no message reaches does not claim they were told someone is on
the way."""

from __future__ import annotations

import html

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from dispatch.help import raise_help, said_ok_after_help
from dispatch.models import AlertKind
from registry.models import Channel, Person, PhoneKind, Source
from registry.profile_sync import Directory
from tests.hosen.console.conftest import START, SignIn, Staff, csrf_of

pytestmark = pytest.mark.db


def _says(page: str, key: str, **params: object) -> bool:
    """Whether ``page`` shows the catalog text ``key`` in any language."""
    text = html.unescape(page)
    return any(t(language, key, **params) in text for language in Language)


def test_the_queue_shows_a_later_ok_and_taking_an_unreachable_residents_alert_says_so(
    sessions: sessionmaker[Session], directory: Directory, staff: Staff, sign_in: SignIn
) -> None:
    kt = directory.authorities["kiryat-tamar"]
    with sessions() as session:
        landline = Person(
            authority_id=kt.id,
            name="Shlomo Peretz",
            phone="+97286881234",
            phone_kind=PhoneKind.LANDLINE,
            channel=Channel.NONE,
            source=Source.STAFF,
            needs_help=True,
        )
        texting = Person(
            authority_id=kt.id,
            name="Miriam Cohen",
            phone="+972525550201",
            phone_kind=PhoneKind.MOBILE,
            channel=Channel.SMS,
            source=Source.STAFF,
            needs_help=True,
        )
        session.add_all([landline, texting])
        session.flush()
        untold = raise_help(
            session, resident=landline, campaign=None, kind=AlertKind.HELP_REQUEST, now=START
        ).id
        later_ok = raise_help(
            session, resident=texting, campaign=None, kind=AlertKind.HELP_REQUEST, now=START
        ).id
        said_ok_after_help(session, answered_at={texting.id: START})
        session.commit()

    officer = sign_in(staff.officer)
    page = officer.get("/console/queue").text
    row = page[page.index(f'data-alert="{later_ok}"') :]
    row = row[: row.index("</tr>")]
    assert _says(row, "dispatch.answered.mark")
    assert "/take" in row  # still open: the officer decides
    other = page[page.index(f'data-alert="{untold}"') :]
    assert not _says(other[: other.index("</tr>")], "dispatch.answered.mark")

    taken = officer.post(f"/console/help/{untold}/take", data={"csrf": csrf_of(page)})
    assert taken.status_code == 303
    shown = officer.get(taken.headers["location"]).text
    assert _says(shown, "console.queue_untold.yours", alert=untold, name="Shlomo Peretz")
    assert not _says(shown, "console.queue.yours", alert=untold, name="Shlomo Peretz")
