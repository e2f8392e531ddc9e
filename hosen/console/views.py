"""The officers' web console: sign-in by a one-time code, the live board, the help queue, the
lists to act on and starting or closing a check-in, served under ``/console`` by the same ASGI
app as the webhooks.

Each handler reads the session cookie, loads the staff member (only an active one counts),
checks what their role may do for which authority (:func:`registry.staff.authorize_member`,
audited as the bot's commands are; the auto-refreshing fragments are checked but not audited),
then calls the registry and dispatch services and renders a template. The database work runs
in a worker thread, one unit of work per request.
"""

from __future__ import annotations

import contextlib
import io
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from config.languages import Language
from config.settings import reveal
from dispatch import board as boards
from dispatch import help as help_alerts
from dispatch import outbox
from dispatch.campaigns import Audience, CampaignError, start_campaign
from dispatch.estimate import Estimate, estimate_campaign
from dispatch.models import (
    HELP_KINDS,
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignStatus,
    OutboxMessage,
    Priority,
)
from dispatch.reports import close_campaign
from hosen.console import map as maps
from hosen.console.assign_page import AssignPages
from hosen.console.import_page import ImportPages
from hosen.console.map import content_security_policy
from hosen.console.pdf import PdfUnavailable, sheet_pdf
from hosen.console.registry_pages import RegistryPages
from hosen.console.session import COOKIE, CSRF_FIELD, ConsoleSession, Sessions
from hosen.console.texts import STATIC, Words, environment
from hosen.context import Context
from registry import audit, phone_codes
from registry.db import unit_of_work
from registry.errors import RegistryError
from registry.models import (
    AuditEntry,
    Authority,
    Channel,
    GroupMember,
    Person,
    ResidentNeeds,
    Zone,
)
from registry.phones import normalise_phone
from registry.spreadsheet import SafeWriter
from registry.staff import (
    CoordinatedGroup,
    NotAuthorized,
    StaffAction,
    StaffMember,
    StaffRole,
    authorities_of,
    authorize_member,
)

SIGN_IN = "/console/sign-in"
CODE_KIND = "console_code"
PAGE_ROWS = 200
BOM = "\ufeff"


@dataclass
class Visit:
    """One request's reader: their session, and the staff member once signed in."""

    session: ConsoleSession
    words: Words
    csrf: str
    member: StaffMember | None = None
    authorities: list[Authority] | None = None

    @property
    def actor(self) -> str:
        return f"console:staff:{self.member.id}" if self.member else "console:unknown"


class Forbidden(Exception):
    """Not for this reader's role or authority: a 403 page, and nothing shown."""


class NotFound(Exception):
    """No such thing, or not this reader's to see (another authority's is not found either)."""


class Console:
    def __init__(self, ctx: Context, *, clock: Callable[[], datetime]) -> None:
        self.ctx = ctx
        self.clock = clock
        settings = ctx.settings
        secret = reveal(settings.console_secret) or secrets.token_urlsafe(32)
        self.sessions = Sessions(
            secret=secret, lifetime=timedelta(hours=settings.console_session_hours)
        )
        self.env = environment()
        self.csp = content_security_policy(settings.map_tiles_origin)
        self.env.globals.update(
            priority=priority_of, last_attempt=last_attempt, next_action=next_action
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console", self.home, methods=["GET"]),
            Route("/console/", self.home, methods=["GET"]),
            Route(SIGN_IN, self.sign_in, methods=["GET", "POST"]),
            Route("/console/sign-in/code", self.code, methods=["GET", "POST"]),
            Route("/console/sign-out", self.sign_out, methods=["POST"]),
            Route("/console/language", self.language, methods=["POST"]),
            Route("/console/board", self.board, methods=["GET"]),
            Route("/console/board/live", self.board_live, methods=["GET"]),
            Route("/console/queue", self.queue, methods=["GET"]),
            Route("/console/queue/rows", self.queue_rows, methods=["GET"]),
            Route("/console/help/{alert_id:int}/{action}", self.help_action, methods=["POST"]),
            Route("/console/lists", self.lists, methods=["GET"]),
            Route("/console/lists.csv", self.lists_csv, methods=["GET"]),
            Route("/console/sheet", self.sheet, methods=["GET"]),
            Route("/console/sheet.pdf", self.sheet_pdf, methods=["GET"]),
            Route("/console/start", self.start, methods=["GET", "POST"]),
            Route("/console/close/{campaign_id:int}", self.close, methods=["POST"]),
            *RegistryPages(self).routes(),
            *ImportPages(self).routes(),
            *AssignPages(self).routes(),
            Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
        ]

    # --- plumbing ------------------------------------------------------------------------------

    def _visit(self, request: Request) -> Visit:
        session = self.sessions.load(request.cookies.get(COOKIE), now=self.clock())
        session = session or ConsoleSession.fresh()
        words = Words(language=session.language, zone=self.ctx.settings.zone_info)
        return Visit(session=session, words=words, csrf=self.sessions.csrf_token(session))

    def _respond(self, request: Request, visit: Visit, response: Response) -> Response:
        response.set_cookie(
            COOKIE,
            self.sessions.dump(visit.session),
            max_age=int(self.sessions.lifetime.total_seconds()),
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = self.csp
        return response

    def _html(
        self, request: Request, visit: Visit, template: str, status: int = 200, **values: Any
    ) -> Response:
        html = self._render(request, visit, template, **values)
        return self._respond(request, visit, HTMLResponse(html, status_code=status))

    def _render(self, request: Request, visit: Visit, template: str, **values: Any) -> str:
        return self.env.get_template(template).render(
            _=visit.words,
            words=visit.words,
            lang=visit.words.language.value,
            dir=visit.words.dir,
            csrf=visit.csrf,
            csrf_field=CSRF_FIELD,
            member=visit.member,
            path=request.url.path,
            **values,
        )

    def _redirect(self, request: Request, visit: Visit, url: str) -> Response:
        if request.headers.get("hx-request"):
            # htmx's request would follow a 303 and draw the sign-in page inside the board:
            # it is told to send the whole page there instead.
            return self._respond(request, visit, Response(headers={"HX-Redirect": url}))
        return self._respond(request, visit, RedirectResponse(url, status_code=303))

    def _load_member(self, db: Session, visit: Visit) -> bool:
        if visit.session.staff_id is None:
            return False
        member = db.get(StaffMember, visit.session.staff_id)
        if member is None or not member.active:
            return False
        visit.member = member
        visit.authorities = authorities_of(db, member)
        return True

    async def _page(
        self,
        request: Request,
        build: Callable[[Session, Visit], Response],
        *,
        form: dict[str, str] | None = None,
    ) -> Response:
        """Run ``build`` for a signed-in reader in one unit of work; anyone else is sent to
        sign in. A form without the right CSRF token is refused before anything happens."""
        visit = self._visit(request)
        if form is not None and not self.sessions.csrf_ok(visit.session, form.get(CSRF_FIELD)):
            return self._html(request, visit, "message.html", 403, message="console.csrf")

        def work() -> Response:
            with unit_of_work(self.ctx.sessions) as db:
                if not self._load_member(db, visit):
                    return self._redirect(request, visit, SIGN_IN)
                try:
                    return build(db, visit)
                except Forbidden:
                    db.commit()  # the refusal's audit entry stays
                    return self._html(
                        request, visit, "message.html", 403, message="console.forbidden"
                    )
                except NotFound:
                    return self._html(
                        request, visit, "message.html", 404, message="console.not_found"
                    )

        return await run_in_threadpool(work)

    async def _form(self, request: Request) -> dict[str, str]:
        form = await request.form()
        return {key: str(value) for key, value in form.multi_items() if isinstance(value, str)}

    async def _form_lists(self, request: Request) -> dict[str, list[str]]:
        form = await request.form()
        lists: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                lists.setdefault(key, []).append(value)
        return lists

    def _allow(
        self,
        db: Session,
        visit: Visit,
        action: StaffAction,
        authority_id: int,
        *,
        audited: bool = True,
        group_id: int | None = None,
    ) -> None:
        assert visit.member is not None
        try:
            authorize_member(
                db,
                member=visit.member,
                action=action,
                authority_id=authority_id,
                group_id=group_id,
                actor=visit.actor,
                now=self.clock(),
                audited=audited,
            )
        except NotAuthorized:
            raise Forbidden from None

    def _authority_ids(self, visit: Visit) -> list[int]:
        return [a.id for a in visit.authorities or []]

    def _campaign(self, db: Session, visit: Visit, raw: str | None) -> Campaign | None:
        """The campaign asked for (only one of the reader's authorities'), else the first of
        theirs running, else their latest."""
        ids = self._authority_ids(visit)
        if raw:
            campaign = db.get(Campaign, int(raw)) if raw.isdecimal() else None
            if campaign is None or campaign.authority_id not in ids:
                raise NotFound
            return campaign
        found = boards.campaigns_of(db, authority_ids=ids, limit=1)
        return found[0] if found else None

    def _zone_names(self, db: Session, visit: Visit) -> dict[int | None, str]:
        names: dict[int | None, str] = {None: visit.words("console.board.no_zone")}
        for zone in db.scalars(
            select(Zone).where(Zone.authority_id.in_(self._authority_ids(visit)))
        ):
            names[zone.id] = zone.name_in(visit.words.language)
        return names

    # --- sign-in -------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        visit = self._visit(request)
        target = "/console/board" if visit.session.staff_id is not None else SIGN_IN
        return self._redirect(request, visit, target)

    async def sign_in(self, request: Request) -> Response:
        visit = self._visit(request)
        if request.method == "GET":
            notice = request.query_params.get("notice")
            notice = notice if notice in ("signed_out", "session_over") else None
            return self._html(request, visit, "sign_in.html", notice=notice, error=None)
        form = await self._form(request)
        if not self.sessions.csrf_ok(visit.session, form.get(CSRF_FIELD)):
            return self._html(request, visit, "message.html", 403, message="console.csrf")
        try:
            phone = normalise_phone(form.get("phone", ""), region=self.ctx.settings.default_region)
        except RegistryError:
            return self._html(
                request,
                visit,
                "sign_in.html",
                400,
                notice=None,
                error=("console.signin.bad_phone", {}),
            )
        error = await run_in_threadpool(self._send_code, visit, phone.e164)
        if error is not None:
            return self._html(request, visit, "sign_in.html", 429, notice=None, error=error)
        visit.session = visit.session.waiting_for_code(phone.e164)
        return self._redirect(request, visit, "/console/sign-in/code")

    def _send_code(self, visit: Visit, phone: str) -> tuple[str, dict[str, Any]] | None:
        """Send a sign-in code to the staff member with this phone: to their verified Telegram
        chat, else by SMS. Someone who is not staff is told the same as staff (a code is on its
        way if the number is staff's), so the form tells nobody who is."""
        now = self.clock()
        with unit_of_work(self.ctx.sessions) as db:
            member = db.scalar(
                select(StaffMember).where(StaffMember.phone == phone, StaffMember.active)
            )
            if member is None:
                return None
            telegram = member.telegram_chat_id is not None
            try:
                issued = (
                    phone_codes.issue(
                        db,
                        phone=normalise_phone(phone, region=self.ctx.settings.default_region),
                        requester=f"console:{member.id}",
                        now=now,
                        actor=f"console:staff:{member.id}",
                    )
                    if not telegram
                    else self._issue_any(db, member, now)
                )
            except phone_codes.CodeRefused as refused:
                if refused.key == "phone.code_landline":
                    return None
                key = (
                    "console.signin.wait"
                    if refused.key == "phone.code_wait"
                    else "console.signin.too_many"
                )
                return key, dict(refused.params)
            message = outbox.enqueue(
                db,
                channel=Channel.TELEGRAM if telegram else Channel.SMS,
                address=str(member.telegram_chat_id) if telegram else member.phone,
                text=visit.words("console.signin.code_message", code=issued.code),
                priority=Priority.INTERACTIVE,
                kind=CODE_KIND,
                due_at=now,
            )
            db.flush()
            issued.record.outbox_id = message.id
        return None

    def _issue_any(self, db: Session, member: StaffMember, now: datetime) -> phone_codes.Issued:
        """A code for a member reached on Telegram: their phone may be a landline, which only
        matters for SMS."""
        from registry.models import PhoneKind
        from registry.phones import Phone

        return phone_codes.issue(
            db,
            phone=Phone(member.phone, PhoneKind.MOBILE),
            requester=f"console:{member.id}",
            now=now,
            actor=f"console:staff:{member.id}",
        )

    async def code(self, request: Request) -> Response:
        visit = self._visit(request)
        if visit.session.pending_phone is None:
            return self._redirect(request, visit, SIGN_IN)
        if request.method == "GET":
            return self._html(request, visit, "code.html", error=None)
        form = await self._form(request)
        if not self.sessions.csrf_ok(visit.session, form.get(CSRF_FIELD)):
            return self._html(request, visit, "message.html", 403, message="console.csrf")
        result = await run_in_threadpool(
            self._check_code, visit.session.pending_phone, form.get("code", "")
        )
        if isinstance(result, int):
            visit.session = visit.session.signed_in(result, self.clock())
            visit.csrf = self.sessions.csrf_token(visit.session)
            return self._redirect(request, visit, "/console/board")
        return self._html(request, visit, "code.html", 400, error=result)

    def _check_code(self, phone: str, answer: str) -> int | tuple[str, dict[str, Any]]:
        """The staff id once the code is right; else what to say."""
        now = self.clock()
        with unit_of_work(self.ctx.sessions) as db:
            member = db.scalar(
                select(StaffMember).where(StaffMember.phone == phone, StaffMember.active)
            )
            if member is None:
                return "console.signin.none", {}
            actor = f"console:staff:{member.id}"
            checked = phone_codes.check(
                db,
                phone=phone,
                requester=f"console:{member.id}",
                answer=answer,
                now=now,
                actor=actor,
            )
            if checked.result == phone_codes.Check.CONFIRMED:
                # The texts that carried codes need not keep them once one is used.
                sent = db.scalars(
                    select(phone_codes.PhoneCode.outbox_id).where(
                        phone_codes.PhoneCode.phone == phone,
                        phone_codes.PhoneCode.requester == f"console:{member.id}",
                        phone_codes.PhoneCode.outbox_id.is_not(None),
                    )
                ).all()
                for message in db.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(sent))):
                    message.text = ""
                audit.record(db, actor=actor, action="console.sign_in", at=now, staff_id=member.id)
                return member.id
            if checked.result == phone_codes.Check.WRONG:
                return "console.signin.wrong", {"left": checked.left}
            key = {
                phone_codes.Check.LOCKED: "console.signin.locked",
                phone_codes.Check.EXPIRED: "console.signin.expired",
            }.get(checked.result, "console.signin.none")
            return key, {}

    async def sign_out(self, request: Request) -> Response:
        visit = self._visit(request)
        form = await self._form(request)
        if not self.sessions.csrf_ok(visit.session, form.get(CSRF_FIELD)):
            return self._html(request, visit, "message.html", 403, message="console.csrf")
        if visit.session.staff_id is not None:
            staff_id = visit.session.staff_id

            def record() -> None:
                with unit_of_work(self.ctx.sessions) as db:
                    audit.record(
                        db,
                        actor=f"console:staff:{staff_id}",
                        action="console.sign_out",
                        at=self.clock(),
                        staff_id=staff_id,
                    )

            await run_in_threadpool(record)
        visit.session = ConsoleSession.fresh(visit.session.language)
        return self._redirect(request, visit, f"{SIGN_IN}?notice=signed_out")

    async def language(self, request: Request) -> Response:
        visit = self._visit(request)
        form = await self._form(request)
        if not self.sessions.csrf_ok(visit.session, form.get(CSRF_FIELD)):
            return self._html(request, visit, "message.html", 403, message="console.csrf")
        with contextlib.suppress(ValueError):
            visit.session = visit.session.with_language(Language(form.get("lang", "")))
        back = form.get("back", "")
        back = back if back.startswith("/console") and "//" not in back else "/console"
        return self._redirect(request, visit, back)

    # --- the live board ------------------------------------------------------------------------

    async def board(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            view = self._board_view(db, visit, request.query_params.get("campaign"), audited=True)
            return self._html(request, visit, "board.html", **view)

        return await self._page(request, build)

    async def board_live(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            view = self._board_view(db, visit, request.query_params.get("campaign"), audited=False)
            return self._html(request, visit, "board_live.html", **view)

        return await self._page(request, build)

    def _board_view(
        self, db: Session, visit: Visit, raw: str | None, *, audited: bool
    ) -> dict[str, Any]:
        ids = self._authority_ids(visit)
        for authority_id in ids:
            self._allow(db, visit, StaffAction.VIEW_CAMPAIGN, authority_id, audited=audited)
        campaign = self._campaign(db, visit, raw)
        now = self.clock()
        view: dict[str, Any] = {
            "campaign": campaign,
            "campaigns": boards.campaigns_of(db, authority_ids=ids),
            "now": now,
        }
        if campaign is None:
            return view
        counts = boards.board_counts(db, campaign=campaign)
        ladder = boards.ladder_of(campaign, now=now)
        passed = [step for step in ladder if step.passed]
        upcoming = [step for step in ladder if not step.passed]
        curve = boards.answer_curve(db, campaign=campaign, now=now)
        names = self._zone_names(db, visit)
        view.update(
            counts=counts,
            states=list(boards.BoardState),
            names=names,
            current=passed[-1] if passed else None,
            upcoming=upcoming[0] if upcoming and campaign.status == CampaignStatus.ACTIVE else None,
            chart=_chart(campaign, curve, ladder, counts.total.total, now),
            map=maps.draw(
                boards.places_of(
                    db, authority_id=campaign.authority_id, language=visit.words.language
                ),
                {z.zone_id: z for z in counts.zones},
                settings=self.ctx.settings,
                resources=maps.sheltering_by_zone(db, authority_id=campaign.authority_id),
            ),
            open_help=boards.open_help_count(db, authority_ids=[campaign.authority_id]),
        )
        return view

    # --- the help queue ------------------------------------------------------------------------

    async def queue(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            view = self._queue_view(db, visit, audited=True)
            flash = self._flash(db, visit, request)
            return self._html(request, visit, "queue.html", flash=flash, **view)

        return await self._page(request, build)

    async def queue_rows(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            version = boards.queue_version(db, authority_ids=self._authority_ids(visit))
            if request.query_params.get("since") == version:
                self._queue_scope(db, visit, audited=False)
                return self._respond(request, visit, Response(status_code=204))
            view = self._queue_view(db, visit, audited=False)
            return self._html(request, visit, "queue_rows.html", **view)

        return await self._page(request, build)

    def _queue_scope(
        self, db: Session, visit: Visit, *, audited: bool
    ) -> tuple[bool, set[int] | None]:
        """(may act, residents the reader may see: None for all of the authorities')."""
        assert visit.member is not None
        if visit.member.role == StaffRole.COORDINATOR:
            groups = list(
                db.scalars(
                    select(CoordinatedGroup.group_id).where(
                        CoordinatedGroup.staff_id == visit.member.id
                    )
                )
            )
            for group_id, authority_id in db.execute(
                select(GroupMember.group_id, Authority.id)
                .join(Person, Person.id == GroupMember.person_id)
                .join(Authority, Authority.id == Person.authority_id)
                .where(GroupMember.group_id.in_(groups or [-1]))
                .limit(1)
            ):
                self._allow(
                    db,
                    visit,
                    StaffAction.MANAGE_GROUP_TASKS,
                    authority_id,
                    audited=audited,
                    group_id=group_id,
                )
            people = set(
                db.scalars(
                    select(GroupMember.person_id).where(GroupMember.group_id.in_(groups or [-1]))
                )
            )
            return False, people
        for authority_id in self._authority_ids(visit):
            self._allow(db, visit, StaffAction.HANDLE_HELP, authority_id, audited=audited)
        return True, None

    def _queue_view(self, db: Session, visit: Visit, *, audited: bool) -> dict[str, Any]:
        may_act, people = self._queue_scope(db, visit, audited=audited)
        ids = self._authority_ids(visit)
        rows = boards.help_queue(db, authority_ids=ids, person_ids=people)
        # Health details only of those who consented to share them; every read is audited
        # (one bulk insert for the page).
        consented = [row.person_id for row in rows if row.health_consent]
        needs: dict[int, list[str]] = {
            found.person_id: found.flags()
            for found in db.scalars(
                select(ResidentNeeds).where(ResidentNeeds.person_id.in_(consented or [-1]))
            )
        }
        if needs:
            now = self.clock()
            db.execute(
                insert(AuditEntry),
                [
                    audit.entry_row(
                        actor=visit.actor,
                        action="needs.read",
                        person_id=person_id,
                        at=now,
                        purpose="console.queue",
                    )
                    for person_id in needs
                ],
            )
        return {
            "rows": rows,
            "needs": needs,
            "names": self._zone_names(db, visit),
            "may_act": may_act,
            "now": self.clock(),
            "version": boards.queue_version(db, authority_ids=ids),
        }

    def _flash(self, db: Session, visit: Visit, request: Request) -> str | None:
        key = request.query_params.get("flash", "")
        raw = request.query_params.get("alert", "")
        if (
            key not in ("yours", "taken_by", "closed_done", "closed_failed", "gone")
            or not raw.isdecimal()
        ):
            return None
        found = help_alerts.resident_of(db, int(raw))
        if found is None or found[1].authority_id not in self._authority_ids(visit):
            return visit.words("console.queue.gone")
        alert, resident = found
        if key == "yours" and alert.kind not in HELP_KINDS:
            # Nobody asked: the resident is told nothing when an officer takes the alert.
            return visit.words(
                "console.queue_owned.yours", alert=alert.id, name=resident.name or "?"
            )
        if key == "yours" and not help_alerts.reaches(db, resident):
            # Taken, but no message reaches them: the officer must not believe they were told.
            return visit.words(
                "console.queue_untold.yours", alert=alert.id, name=resident.name or "?"
            )
        return visit.words(
            f"console.queue.{key}",
            alert=alert.id,
            name=resident.name or "?",
            owner=help_alerts.owner_name(db, alert) or "?",
        )

    async def help_action(self, request: Request) -> Response:
        form = await self._form(request)
        alert_id = int(request.path_params["alert_id"])
        action = str(request.path_params["action"])

        def build(db: Session, visit: Visit) -> Response:
            assert visit.member is not None
            if action not in (
                help_alerts.AlertAction.TAKE,
                help_alerts.AlertAction.DONE,
                help_alerts.AlertAction.FAIL,
            ):
                raise NotFound
            found = help_alerts.resident_of(db, alert_id)
            if found is None or found[1].authority_id not in self._authority_ids(visit):
                raise NotFound
            self._allow(db, visit, StaffAction.HANDLE_HELP, found[1].authority_id)
            handled = help_alerts.handle(
                db, alert_id=alert_id, action=action, member=visit.member, now=self.clock()
            )
            query = urlencode({"flash": handled.key, "alert": alert_id})
            return self._redirect(request, visit, f"/console/queue?{query}")

        return await self._page(request, build, form=form)

    # --- lists to act on -----------------------------------------------------------------------

    def _list_args(
        self, db: Session, visit: Visit, request: Request
    ) -> tuple[Campaign | None, boards.ListKind, int | None]:
        campaign = self._campaign(db, visit, request.query_params.get("campaign"))
        if campaign is not None:
            self._allow(db, visit, StaffAction.VIEW_UNREACHED, campaign.authority_id)
        else:
            for authority_id in self._authority_ids(visit):
                self._allow(db, visit, StaffAction.VIEW_UNREACHED, authority_id)
        try:
            kind = boards.ListKind(request.query_params.get("kind", "unreached"))
        except ValueError:
            raise NotFound from None
        raw = request.query_params.get("zone", "")
        zone_id = int(raw) if raw.isdecimal() else None
        if zone_id is not None and campaign is not None:
            zone = db.get(Zone, zone_id)
            if zone is None or zone.authority_id != campaign.authority_id:
                raise NotFound
        return campaign, kind, zone_id

    async def lists(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            campaign, kind, zone_id = self._list_args(db, visit, request)
            raw = request.query_params.get("page", "1")
            page = max(1, int(raw)) if raw.isdecimal() else 1
            found = (
                boards.action_list(
                    db,
                    campaign=campaign,
                    kind=kind,
                    zone_id=zone_id,
                    limit=PAGE_ROWS,
                    offset=(page - 1) * PAGE_ROWS,
                )
                if campaign is not None
                else boards.ActionList(rows=[], total=0)
            )
            zones = (
                list(
                    db.scalars(
                        select(Zone)
                        .where(Zone.authority_id == campaign.authority_id)
                        .order_by(Zone.id)
                    )
                )
                if campaign is not None
                else []
            )
            names = self._zone_names(db, visit)
            return self._html(
                request,
                visit,
                "lists.html",
                campaign=campaign,
                campaigns=boards.campaigns_of(db, authority_ids=self._authority_ids(visit)),
                kind=kind,
                kinds=list(boards.ListKind),
                zone_id=zone_id,
                zones=zones,
                found=Shown(rows=list_lines(visit.words, names, found.rows), total=found.total),
                page=page,
                pages=max(1, math.ceil(found.total / PAGE_ROWS)),
                names=names,
                query=_query,
            )

        return await self._page(request, build)

    async def sheet(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            return self._html(request, visit, "sheet.html", **self._sheet_view(db, visit, request))

        return await self._page(request, build)

    async def sheet_pdf(self, request: Request) -> Response:
        """The call-down sheet as a PDF: the same page, laid out by WeasyPrint for print once
        the unit of work has ended (a long sheet takes seconds; no connection waits on it)."""
        made: dict[str, Any] = {}

        def build(db: Session, visit: Visit) -> Response:
            values = self._sheet_view(db, visit, request) | {"pdf": True}
            campaign, kind, zone_id = values["campaign"], values["kind"], values["zone_id"]
            zone = f"-zone-{zone_id}" if zone_id is not None else ""
            made.update(
                html=self._render(request, visit, "sheet.html", **values),
                name=f"hosen-{campaign.id}-{kind.value}{zone}.pdf",
                visit=visit,
            )
            return Response(status_code=204)  # replaced by the PDF below

        answer = await self._page(request, build)
        if not made:  # not signed in, not found, not allowed: that page as it is
            return answer
        visit = made["visit"]
        try:
            pdf = await run_in_threadpool(sheet_pdf, made["html"])
        except PdfUnavailable:
            return self._html(
                request, visit, "message.html", 503, message="console.pdf.unavailable"
            )
        response = Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{made["name"]}"'},
        )
        return self._respond(request, visit, response)

    def _sheet_view(self, db: Session, visit: Visit, request: Request) -> dict[str, Any]:
        """What the call-down sheet shows, one section per zone (audited as the lists are)."""
        campaign, kind, zone_id = self._list_args(db, visit, request)
        if campaign is None:
            raise NotFound
        found = boards.action_list(db, campaign=campaign, kind=kind, zone_id=zone_id, limit=None)
        names = self._zone_names(db, visit)
        zone = names.get(zone_id) if zone_id is not None else visit.words("console.lists.all_zones")
        groups: list[tuple[int | None, list[ListLine]]] = []
        lines = list_lines(visit.words, names, found.rows)
        for row, line in zip(found.rows, lines, strict=True):  # ordered by zone: a sheet a zone
            if not groups or groups[-1][0] != row.zone_id:
                groups.append((row.zone_id, []))
            groups[-1][1].append(line)
        return {
            "campaign": campaign,
            "kind": kind,
            "found": found,
            "names": names,
            "zone": zone,
            "zone_id": zone_id,
            "now": self.clock(),
            "groups": groups,
            "pdf": False,
            "query": _query,
        }

    async def lists_csv(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            campaign, kind, zone_id = self._list_args(db, visit, request)
            if campaign is None:
                raise NotFound
            found = boards.action_list(
                db, campaign=campaign, kind=kind, zone_id=zone_id, limit=None
            )
            names = self._zone_names(db, visit)
            words = visit.words
            out = io.StringIO()
            out.write(BOM)  # so a spreadsheet reads Hebrew and Arabic as UTF-8
            writer = SafeWriter(out)
            writer.writerow(
                words(f"console.lists.{column}")
                for column in (
                    "name",
                    "phone",
                    "address",
                    "zone",
                    "buddy",
                    "priority",
                    "last",
                    "next",
                )
            )
            lines = list_lines(words, names, found.rows)
            for row, line in zip(found.rows, lines, strict=True):
                writer.writerow(
                    [
                        row.name,
                        row.phone or "",
                        row.address or "",
                        names.get(row.zone_id, ""),
                        f"{row.buddy} {row.buddy_phone or ''}".strip() if row.buddy else "",
                        line.priority,
                        line.last,
                        line.next,
                    ]
                )
            name = f"hosen-{campaign.id}-{kind.value}.csv"
            response = Response(
                out.getvalue().encode("utf-8"),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
            return self._respond(request, visit, response)

        return await self._page(request, build)

    # --- start and close -----------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        lists = await self._form_lists(request) if request.method == "POST" else {}
        form = {key: values[-1] for key, values in lists.items()}

        def build(db: Session, visit: Visit) -> Response:
            if not visit.authorities:
                raise NotFound
            authority = visit.authorities[0]
            self._allow(
                db, visit, StaffAction.START_CAMPAIGN, authority.id, audited=request.method == "GET"
            )
            zones = list(
                db.scalars(select(Zone).where(Zone.authority_id == authority.id).order_by(Zone.id))
            )
            running = list(
                db.scalars(
                    select(Campaign)
                    .where(
                        Campaign.authority_id.in_(self._authority_ids(visit)),
                        Campaign.status == CampaignStatus.ACTIVE,
                    )
                    .order_by(Campaign.id)
                )
            )
            values: dict[str, Any] = {
                "zones": zones,
                "running": running,
                "step": "choose",
                "estimate": None,
                "warnings": [],
                "error": None,
                "chosen": {"mode": "drill", "who": "residents", "zones": []},
                "flash": None,
            }
            if request.method == "GET":
                flash = request.query_params.get("closed", "")
                if flash.isdecimal():
                    values["flash"] = visit.words("console.start.closed", id=int(flash))
                return self._html(request, visit, "start.html", **values)
            mode = CampaignMode.EMERGENCY if form.get("mode") == "emergency" else CampaignMode.DRILL
            who = "everyone" if form.get("who") == "everyone" else "residents"
            known = {zone.code for zone in zones}
            chosen_zones = [code for code in lists.get("zone", []) if code in known]
            audience = Audience(zones=tuple(chosen_zones), residents_only=who == "residents")
            values["chosen"] = {"mode": mode.value, "who": who, "zones": chosen_zones}
            now = self.clock()
            estimate = estimate_campaign(
                db,
                authority=authority,
                audience=audience,
                kind=CampaignKind.CHECKIN,
                mode=mode,
                settings=self.ctx.settings,
                now=now,
                profile=self.ctx.profile,
            )
            values["estimate"] = estimate
            values["warnings"] = self._channel_warnings(visit, estimate)
            values["zone_names"] = {zone.code: zone.name_in(visit.words.language) for zone in zones}
            step = form.get("step", "estimate")
            if step == "estimate":
                values["step"] = "confirm"
                return self._html(request, visit, "start.html", **values)
            if step == "confirm" and mode == CampaignMode.EMERGENCY:
                values["step"] = "again"
                return self._html(request, visit, "start.html", **values)
            if mode == CampaignMode.EMERGENCY and form.get("word", "").strip() != visit.words(
                "console.start.word"
            ):
                values["step"], values["error"] = "again", visit.words("console.start.wrong_word")
                return self._html(request, visit, "start.html", 400, **values)
            if step not in ("confirm", "again"):
                raise NotFound
            self._allow(db, visit, StaffAction.START_CAMPAIGN, authority.id)
            try:
                campaign = start_campaign(
                    db,
                    authority=authority,
                    kind=CampaignKind.CHECKIN,
                    mode=mode,
                    audience=audience,
                    started_by=visit.actor,
                    now=now,
                )
            except CampaignError as exc:
                values["error"] = visit.words("console.start.failed", reason=str(exc))
                return self._html(request, visit, "start.html", 400, **values)
            return self._redirect(request, visit, f"/console/board?campaign={campaign.id}")

        return await self._page(request, build, form=form if request.method == "POST" else None)

    def _channel_warnings(self, visit: Visit, estimate: Estimate) -> list[str]:
        """A channel some of the audience would get the check-in by, that is not configured."""
        settings = self.ctx.settings
        warnings = []
        for count, enabled, key in (
            (estimate.telegram, settings.telegram_enabled, "console.delivery.telegram"),
            (estimate.sms, settings.sms_enabled, "console.delivery.sms"),
        ):
            if count and not enabled:
                warnings.append(
                    visit.words(
                        "console.start.not_configured",
                        channel=visit.words(key),
                        count=visit.words.number(count),
                    )
                )
        return warnings

    async def close(self, request: Request) -> Response:
        form = await self._form(request)
        campaign_id = int(request.path_params["campaign_id"])

        def build(db: Session, visit: Visit) -> Response:
            campaign = db.get(Campaign, campaign_id)
            if campaign is None or campaign.authority_id not in self._authority_ids(visit):
                raise NotFound
            self._allow(db, visit, StaffAction.CLOSE_CAMPAIGN, campaign.authority_id)
            close_campaign(db, campaign=campaign, now=self.clock())
            return self._redirect(request, visit, f"/console/start?closed={campaign.id}")

        return await self._page(request, build, form=form)


# --- what the templates draw -------------------------------------------------------------------


def _query(**values: Any) -> str:
    return urlencode({k: v for k, v in values.items() if v is not None and v != ""})


def priority_of(risk_rank: int) -> str:
    """The risk rank (lower: more at risk) in three words an officer can sort by."""
    if risk_rank <= 22:
        return "high"
    if risk_rank <= 27:
        return "medium"
    return "normal"


@dataclass(frozen=True)
class ListLine:
    """One row of a list as shown, printed and exported: every cell already in words."""

    name: str
    phone: str
    address: str
    zone: str
    buddy: str | None
    buddy_phone: str | None
    priority: str
    last: str
    next: str


@dataclass(frozen=True)
class Shown:
    rows: list[ListLine]
    total: int


def list_lines(
    words: Words, names: dict[int | None, str], rows: list[boards.ListRow]
) -> list[ListLine]:
    """The rows' cells in the reader's words, in Python rather than in the template: a sheet
    of a few thousand rows renders in a fraction of the time."""
    return [
        ListLine(
            name=row.name,
            phone=row.phone or "-",
            address=row.address or "-",
            zone=names.get(row.zone_id, "?"),
            buddy=row.buddy,
            buddy_phone=row.buddy_phone,
            priority=words(f"console.lists.{priority_of(row.priority)}"),
            last=last_attempt(words, row),
            next=next_action(words, row),
        )
        for row in rows
    ]


def last_attempt(words: Words, row: boards.ListRow) -> str:
    if row.last_channel is None:
        return words("console.lists.nothing_sent")
    channel = words(f"console.delivery.{row.last_channel}")
    status = words(f"console.delivery.{row.last_status}")
    return f"{channel}: {status}, {words.time(row.last_at)}"


def next_action(words: Words, row: boards.ListRow) -> str:
    return words(
        f"console.next.{row.next_action.value}",
        time=words.time(row.next_at),
        name=row.helper or "?",
    )


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    line: str  # SVG polyline points
    marks: list[tuple[float, str]]  # x and the step's catalog key
    top: int  # the audience: the y axis's top
    minutes: float  # the x axis's span
    last: int


def _chart(
    campaign: Campaign,
    curve: list[tuple[float, int]],
    ladder: list[boards.LadderStep],
    audience: int,
    now: datetime,
) -> Chart:
    width, height, left, bottom, top_pad = 640, 220, 48, 30, 12
    span = curve[-1][0] if curve else 1.0
    inner_w, inner_h = width - left - 12, height - bottom - top_pad
    top = max(1, audience)

    def x(seconds: float) -> float:
        return round(left + inner_w * seconds / span, 1) if span else float(left)

    def y(count: int) -> float:
        return round(top_pad + inner_h * (1 - count / top), 1)

    line = " ".join(f"{x(s)},{y(c)}" for s, c in curve)
    marks = []
    for step in ladder[1:]:
        offset = (step.at - campaign.started_at).total_seconds()
        if offset <= span:
            marks.append((x(offset), f"console.rung.{step.rung.value}"))
    return Chart(width, height, line, marks, top, span / 60, curve[-1][1] if curve else 0)


def console_routes(ctx: Context, *, clock: Callable[[], datetime]) -> list[BaseRoute]:
    """The console's routes, for :func:`hosen.app.build_app`."""
    return Console(ctx, clock=clock).routes()
