"""The console's registry pages, read only: people search and a person page, groups and their
coordinators, community resources, the needs / answers / gaps map per zone, and a campaign's
drill report inside the console's frame.

Each page reads through the registry's own functions (``registry.groups.list_groups``,
``registry.resources.list_resources``, ``registry.gaps.needs_answers_gaps``,
``registry.assignment.stored.stored_assignments``, ``hosen.report_html.report_view``), scoped to
the reader's authorities (another authority's person or campaign is not found) and authorised
(:data:`StaffAction.VIEW_REGISTRY`, which coordinators do not have), audited per page. A person's
needs are shown only to a role that handles help, and each such read is audited as
``needs.read``.

The gaps map runs an assignment dry run (seconds at a town's size): it is kept per authority and
language for :data:`GAPS_FRESH` and computed again on the page's "refresh" button.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dispatch.models import Campaign
from dispatch.reports import drill_report
from hosen.report_html import authority_name, report_view, template_values
from registry import audit
from registry.assignment.stored import stored_assignments
from registry.errors import RegistryError
from registry.gaps import NeedsMap, ZoneMap, needs_answers_gaps
from registry.groups import list_groups
from registry.models import Authority, Group, GroupMember, Person, PersonStatus, Zone
from registry.phones import normalise_phone
from registry.resources import list_resources
from registry.staff import ALLOWED, StaffAction

if TYPE_CHECKING:
    from hosen.console.texts import Words
    from hosen.console.views import Console, Visit

PEOPLE_ROWS = 50
GAPS_FRESH = timedelta(minutes=5)


@dataclass(frozen=True)
class CachedMap:
    computed_at: datetime
    map: NeedsMap


class RegistryPages:
    """The read-only registry pages of one :class:`~hosen.console.views.Console`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._gaps: dict[tuple[int, str], CachedMap] = {}
        self._gaps_lock = threading.Lock()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/people", self.people, methods=["GET"]),
            Route("/console/people/{person_id:int}", self.person, methods=["GET"]),
            Route("/console/groups", self.groups, methods=["GET"]),
            Route("/console/resources", self.resources, methods=["GET"]),
            Route("/console/gaps", self.gaps, methods=["GET", "POST"]),
            Route("/console/report/{campaign_id:int}", self.report, methods=["GET"]),
        ]

    # --- shared --------------------------------------------------------------------------------

    def _authority(self, db: Session, visit: Visit, raw: str | None) -> Authority:
        """The authority asked for (one of the reader's), else their first; authorised."""
        authorities = visit.authorities or []
        from hosen.console.views import NotFound

        if not authorities:
            raise NotFound
        chosen = authorities[0]
        if raw:
            found = [a for a in authorities if str(a.id) == raw]
            if not found:
                raise NotFound
            chosen = found[0]
        self.console._allow(db, visit, StaffAction.VIEW_REGISTRY, chosen.id)
        return chosen

    def _zones(self, db: Session, authority: Authority) -> list[Zone]:
        return list(
            db.scalars(select(Zone).where(Zone.authority_id == authority.id).order_by(Zone.id))
        )

    # --- people --------------------------------------------------------------------------------

    async def people(self, request: Request) -> Response:
        params = request.query_params

        def build(db: Session, visit: Visit) -> Response:
            from hosen.console.views import _query

            authority = self._authority(db, visit, params.get("authority"))
            zones = self._zones(db, authority)
            name = params.get("name", "").strip()[:80]
            phone = params.get("phone", "").strip()[:30]
            raw_zone = params.get("zone", "")
            zone_id = int(raw_zone) if raw_zone.isdecimal() else None
            if zone_id is not None and zone_id not in {z.id for z in zones}:
                zone_id = None
            raw_page = params.get("page", "1")
            page = max(1, int(raw_page)) if raw_page.isdecimal() else 1
            error = None
            query = select(Person).where(
                Person.authority_id == authority.id, Person.status != PersonStatus.ERASED
            )
            if name:
                escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(func.lower(Person.name).like(f"%{escaped.lower()}%", "\\"))
            if phone:
                try:
                    e164 = normalise_phone(phone, region=self.console.ctx.settings.default_region)
                    query = query.where(Person.phone == e164.e164)
                except RegistryError:
                    digits = "".join(c for c in phone if c.isdigit())
                    if len(digits) >= 9 and digits.startswith("0"):
                        digits = digits[1:]  # a whole national number: "+972" and the rest
                    if len(digits) < 3:
                        error = visit.words("console.people.bad_phone")
                    query = query.where(Person.phone.like(f"%{digits or '-'}%"))
            if zone_id is not None:
                query = query.where(Person.zone_id == zone_id)
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(
                db.scalars(
                    query.order_by(Person.name, Person.id)
                    .limit(PEOPLE_ROWS)
                    .offset((page - 1) * PEOPLE_ROWS)
                )
            )
            audit.record(
                db,
                actor=visit.actor,
                action="people.list",
                at=self.console.clock(),
                authority_id=authority.id,
                shown=len(rows),
                purpose="console.people",
            )
            return self.console._html(
                request,
                visit,
                "people.html",
                authority=authority,
                zones=zones,
                names=self.console._zone_names(db, visit),
                rows=rows,
                total=total,
                page=page,
                pages=max(1, math.ceil(total / PEOPLE_ROWS)),
                chosen={"name": name, "phone": phone, "zone": zone_id},
                error=error,
                query=_query,
            )

        return await self.console._page(request, build)

    async def person(self, request: Request) -> Response:
        person_id = int(request.path_params["person_id"])

        def build(db: Session, visit: Visit) -> Response:
            from hosen.console.views import NotFound

            assert visit.member is not None
            person = db.get(Person, person_id)
            if (
                person is None
                or person.status == PersonStatus.ERASED
                or person.authority_id not in self.console._authority_ids(visit)
            ):
                raise NotFound
            self.console._allow(db, visit, StaffAction.VIEW_REGISTRY, person.authority_id)
            needs: list[str] | None = None
            contact: str | None = None
            may_read_needs = StaffAction.HANDLE_HELP in ALLOWED[visit.member.role]
            if person.needs_help and may_read_needs:
                found = audit.read_needs(db, person, actor=visit.actor, purpose="console.person")
                if found is not None:
                    needs, contact = found.flags(), found.emergency_contact_name
            groups = db.execute(
                select(Group, GroupMember.is_coordinator)
                .join(GroupMember, GroupMember.group_id == Group.id)
                .where(GroupMember.person_id == person.id)
                .order_by(Group.name)
            ).all()
            return self.console._html(
                request,
                visit,
                "person.html",
                person=person,
                zone=self.console._zone_names(db, visit).get(person.zone_id, ""),
                stored=stored_assignments(db, person_id=person.id),
                groups=groups,
                needs=needs,
                contact=contact,
                may_read_needs=may_read_needs,
                role_names={
                    role.code: role.names.get(visit.words.language)
                    for role in self.console.ctx.profile.roles
                },
            )

        return await self.console._page(request, build)

    # --- groups and resources ------------------------------------------------------------------

    async def groups(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            authority = self._authority(db, visit, request.query_params.get("authority"))
            return self.console._html(
                request,
                visit,
                "groups.html",
                authority=authority,
                groups=list_groups(db, authority=authority),
                zone_names={
                    z.code: z.name_in(visit.words.language) for z in self._zones(db, authority)
                },
            )

        return await self.console._page(request, build)

    async def resources(self, request: Request) -> Response:
        def build(db: Session, visit: Visit) -> Response:
            authority = self._authority(db, visit, request.query_params.get("authority"))
            return self.console._html(
                request,
                visit,
                "resources.html",
                authority=authority,
                resources=list_resources(db, authority=authority),
                zone_names={
                    z.code: z.name_in(visit.words.language) for z in self._zones(db, authority)
                },
            )

        return await self.console._page(request, build)

    # --- the needs / answers / gaps map --------------------------------------------------------

    async def gaps(self, request: Request) -> Response:
        form = await self.console._form(request) if request.method == "POST" else None
        raw = (form or {}).get("authority") or request.query_params.get("authority")

        def build(db: Session, visit: Visit) -> Response:
            authority = self._authority(db, visit, raw)
            language = visit.words.language
            key = (authority.id, language.value)
            now = self.console.clock()
            with self._gaps_lock:
                cached = self._gaps.get(key)
            if form is not None or cached is None or now - cached.computed_at > GAPS_FRESH:
                found = needs_answers_gaps(
                    db,
                    authority=authority,
                    profile=self.console.ctx.profile,
                    now=now,
                    language=language,
                )
                cached = CachedMap(computed_at=now, map=found)
                with self._gaps_lock:
                    self._gaps[key] = cached
            return self.console._html(
                request,
                visit,
                "gaps.html",
                authority=authority,
                title_name=authority_name(db, self.console.ctx.profile, authority.id, language),
                needs_map=cached.map,
                computed_at=cached.computed_at,
                resource_list=lambda zone: _resource_list(visit.words, zone),
            )

        return await self.console._page(request, build, form=form)

    # --- the drill report ----------------------------------------------------------------------

    async def report(self, request: Request) -> Response:
        campaign_id = int(request.path_params["campaign_id"])

        def build(db: Session, visit: Visit) -> Response:
            from hosen.console.views import NotFound

            campaign = db.get(Campaign, campaign_id)
            if campaign is None or campaign.authority_id not in self.console._authority_ids(visit):
                raise NotFound
            self.console._allow(db, visit, StaffAction.VIEW_CAMPAIGN, campaign.authority_id)
            language = visit.words.language
            settings = self.console.ctx.settings
            view = report_view(
                db,
                campaign=campaign,
                report=drill_report(db, campaign=campaign),
                local=settings.zone_info,
                now=self.console.clock(),
                language=language,
                authority=authority_name(
                    db, self.console.ctx.profile, campaign.authority_id, language
                ),
                timezone=settings.timezone,
            )
            values: dict[str, Any] = template_values(view)
            return self.console._html(
                request, visit, "campaign_report.html", campaign=campaign, **values
            )

        return await self.console._page(request, build)


def _resource_list(words: Words, zone: ZoneMap) -> str:
    """A zone's resources by kind, "Generator 1/2 available; Water 3/3 available"."""
    return "; ".join(
        words(
            "gaps.resource_line",
            kind=words(f"resources.kind.{kind}"),
            available=words.number(seen["available"]),
            total=words.number(seen["total"]),
        )
        for kind, seen in zone.resources.items()
    )
