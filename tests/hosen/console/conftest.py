"""Fixtures for the console's tests: the real ASGI app on a test database, a clock that moves
only when told to, staff of two authorities, and a signed-in HTTP client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from config.settings import Settings
from dispatch.models import OutboxMessage
from hosen.app import build_app
from hosen.context import Context
from registry.models import Authority
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffMember, StaffRole, add_staff

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Clock:
    """The console's clock: stands still until a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def move(self, **delta: float) -> None:
        self.at += timedelta(**delta)


class TestClient:
    """A browser's view of the app over HTTP, without a network: real requests through httpx's
    ASGI transport, cookies kept from one request to the next, redirects not followed."""

    __test__ = False

    def __init__(
        self,
        app: Starlette,
        *,
        follow_redirects: bool = False,
        cookies: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.cookies = httpx.Cookies(cookies or {})

    def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app),
                base_url="http://testserver",
                cookies=self.cookies,
            ) as client:
                answer = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
                self.cookies = httpx.Cookies(client.cookies)
                return answer

        return asyncio.run(go())

    def get(self, url: str, **kwargs: object) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: object) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def console_app(
    settings: Settings, sessions: sessionmaker[Session], directory: Directory, clock: Clock
) -> Iterator[Starlette]:
    ctx = Context(settings=settings)
    app = build_app(
        ctx,
        clock=clock,
        run_worker=False,
        run_bot=False,
        run_scheduler=False,
        run_processor=False,
    )
    yield app
    ctx.close()


@dataclass
class Staff:
    officer: StaffMember
    other_officer: StaffMember  # of the other authority
    coordinator: StaffMember | None = None


def staff_member(
    session: Session, *, phone: str, name: str, authority: Authority, role: StaffRole
) -> StaffMember:
    return add_staff(
        session,
        name=name,
        phone=normalise_phone(phone, region="IL"),
        authority=authority,
        role=role,
        actor="test",
        now=START,
    )


@pytest.fixture
def staff(sessions: sessionmaker[Session], directory: Directory) -> Staff:
    with sessions() as session:
        officer = staff_member(
            session,
            phone="052-555-1000",
            name="Rina Levi",
            authority=directory.authorities["kiryat-tamar"],
            role=StaffRole.OFFICER,
        )
        other = staff_member(
            session,
            phone="052-555-3000",
            name="Yusuf Haddad",
            authority=directory.authorities["emek-tamar"],
            role=StaffRole.OFFICER,
        )
        session.commit()
        session.expunge_all()
    return Staff(officer=officer, other_officer=other)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def last_code(sessions: sessionmaker[Session], address: str) -> str:
    """The code in the latest sign-in message queued for ``address`` (the outbox row)."""
    with sessions() as session:
        text = session.scalars(
            select(OutboxMessage.text)
            .where(OutboxMessage.address == address, OutboxMessage.kind == "console_code")
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        ).one()
    found = re.search(r"\d{6}", text)
    assert found, text
    return found.group(0)


SignIn = Callable[[StaffMember], TestClient]


@pytest.fixture
def sign_in(console_app: Starlette, sessions: sessionmaker[Session]) -> SignIn:
    def signed_in(member: StaffMember) -> TestClient:
        client = TestClient(console_app, follow_redirects=False)
        page = client.get("/console/sign-in")
        sent = client.post(
            "/console/sign-in", data={"csrf": csrf_of(page.text), "phone": member.phone}
        )
        assert sent.status_code == 303, sent.text
        page = client.get("/console/sign-in/code")
        done = client.post(
            "/console/sign-in/code",
            data={"csrf": csrf_of(page.text), "code": last_code(sessions, member.phone)},
        )
        assert done.status_code == 303 and done.headers["location"] == "/console/board", done.text
        return client

    return signed_in
