"""The console's assignment run and review: the engine's dry run, per zone (demand of each tier
met and unmet, the gaps with their true causes, what would change against the current plan, the
current offers and their answers), then "apply", which writes the plan as ``hosen assign`` does.

The dry run is :func:`registry.assignment.store.assign_authority` with ``dry_run=True`` and
applying is the same call without it, as the CLI makes them: the engine writes its change rows
and the scheduler's offer sweep (:func:`dispatch.offers.sweep_offers`) asks each volunteer, one
seat at a time, exactly as after ``hosen assign``. The gaps are worded by
:func:`registry.assignment.report.gap_lines`, as ``hosen gaps`` and the gaps map word them.

A dry run takes seconds in a large town: it runs on "Run the assignment" (a POST, then the page
is drawn again by GET) in a worker thread, and its review is kept per authority with the
registry's version (:func:`registry_version`) for :data:`KEPT_FOR`. "Apply" writes only when the
registry is still the version that was reviewed; otherwise the plan is computed again and shown
to be reviewed anew. Counts only: no name, phone or need is on this page. Audited
(``assignment.run`` for the page, the dry run and the apply; the apply as ``assign.run`` too).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config.languages import Language
from config.profile import Profile
from hosen.report_html import authority_name
from registry import audit
from registry.assignment.buddies import Coverage
from registry.assignment.models import AssignmentOffer, AssignmentRun, OfferState
from registry.assignment.report import gap_lines
from registry.assignment.roles import OpenSeats, Scope
from registry.assignment.store import AssignmentResult, assign_authority
from registry.assignment.tiers import BuddyGap, TierResult
from registry.models import (
    Authority,
    BuddyAssignment,
    Consent,
    Person,
    RoleAssignment,
    Shelter,
    Zone,
)
from registry.staff import StaffAction

if TYPE_CHECKING:
    from hosen.console.texts import Words
    from hosen.console.views import Console, Visit

KEPT_FOR = timedelta(minutes=10)
TOWN_WIDE = None  # the zone key of people without a zone and of town-wide seats
CHANGES = ("buddy_new", "buddy_rank", "buddy_released", "role_new", "role_released")
# The states of offers the page counts; "offered" and "reminded" are both waiting for an answer.
OFFER_COLUMNS = ("queued", "waiting", "confirmed", "declined", "expired")
_OFFER_COLUMN = {
    OfferState.QUEUED.value: "queued",
    OfferState.OFFERED.value: "waiting",
    OfferState.REMINDED.value: "waiting",
    OfferState.CONFIRMED.value: "confirmed",
    OfferState.DECLINED.value: "declined",
    OfferState.EXPIRED.value: "expired",
}


@dataclass
class TierCount:
    demand: int = 0
    met: int = 0

    @property
    def unmet(self) -> int:
        return max(0, self.demand - self.met)


@dataclass
class PlanReview:
    """What one dry run found, in counts and codes (any language draws it)."""

    authority_id: int
    version: str
    computed_at: datetime
    tiers: list[TierResult]
    coverage: Coverage
    seats: int
    filled: int
    per_zone: dict[int | None, dict[int, TierCount]]  # zone -> tier -> demand and met
    changes: dict[int | None, Counter[str]]  # zone -> "buddy_new", "role_released"...
    buddy_gaps: list[BuddyGap]
    open_seats: list[OpenSeats]
    zone_codes: dict[int, str]
    tier_of_role: dict[str, int]
    shelters: dict[int, str] = field(default_factory=dict)

    def total_changes(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.changes.values():
            total.update(counts)
        return total


@dataclass
class ZoneView:
    """One zone's card, in the reader's language."""

    zone_id: int | None
    name: str
    tiers: list[tuple[TierResult, TierCount]]
    gaps: list[str]
    changes: Counter[str]
    offers: Counter[str]


def registry_version(session: Session, *, authority_id: int) -> str:
    """A digest of what the plan depends on, cheap to read: the authority's people (how many,
    the last change), their buddies, roles and consents, the offers and the runs. A plan
    reviewed at one version is written only at the same version."""
    people = Person.authority_id == authority_id
    parts: list[Any] = []
    for query in (
        select(func.count(), func.max(Person.updated_at)).where(people),
        select(func.count(), func.max(BuddyAssignment.updated_at))
        .join(Person, Person.id == BuddyAssignment.resident_id)
        .where(people),
        select(func.count(), func.max(RoleAssignment.updated_at)).where(
            RoleAssignment.authority_id == authority_id
        ),
        select(func.count(), func.max(Consent.id))
        .join(Person, Person.id == Consent.person_id)
        .where(people),
        select(func.count(), func.max(AssignmentOffer.id))
        .join(Person, Person.id == AssignmentOffer.volunteer_id)
        .where(people),
        select(func.max(AssignmentRun.id)).where(AssignmentRun.authority_id == authority_id),
    ):
        parts.extend(session.execute(query).one())
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def review_of(
    session: Session,
    result: AssignmentResult,
    *,
    authority_id: int,
    version: str,
    computed_at: datetime,
) -> PlanReview:
    """The dry run's result per zone: each tier's demand and how much of it the plan meets, and
    the changes it would make (a resident's zone for buddies, the seat's zone for roles)."""
    zone_of: dict[int, int | None] = {
        person_id: zone_id
        for person_id, zone_id in session.execute(
            select(Person.id, Person.zone_id).where(Person.authority_id == authority_id)
        )
    }
    shelters = {
        row.id: (row.zone_id, row.name)
        for row in session.execute(
            select(Shelter.id, Shelter.zone_id, Shelter.name).where(
                Shelter.authority_id == authority_id
            )
        )
    }

    def seat_zone(zone_id: int | None, shelter_id: int | None) -> int | None:
        if zone_id is not None:
            return zone_id
        return shelters[shelter_id][0] if shelter_id in shelters else TOWN_WIDE

    per_zone: dict[int | None, dict[int, TierCount]] = defaultdict(lambda: defaultdict(TierCount))
    covered = {pair.resident_id for pair in result.buddies.pairs if pair.rank == 1}
    for resident_id, tier in result.tier_of_resident.items():
        count = per_zone[zone_of.get(resident_id)][tier]
        count.demand += 1
        count.met += resident_id in covered
    for holder in result.roles.holders:
        role_tier = result.tier_of_role.get(holder.role_code)
        if role_tier is not None:
            count = per_zone[seat_zone(holder.zone_id, holder.shelter_id)][role_tier]
            count.demand += 1
            count.met += 1
    for seats in result.roles.open_seats:
        quota = seats.quota
        role_tier = result.tier_of_role.get(quota.role_code)
        if role_tier is not None:
            zone = TOWN_WIDE if quota.scope == Scope.TOTAL else seat_zone(quota.zone_id, None)
            per_zone[zone][role_tier].demand += seats.open

    changes: dict[int | None, Counter[str]] = defaultdict(Counter)
    for buddy in result.buddies.changes:
        changes[zone_of.get(buddy.resident_id)][f"buddy_{buddy.kind}"] += 1
    for role in result.roles.changes:
        zone = seat_zone(role.holder.zone_id, role.holder.shelter_id)
        changes[zone][f"role_{role.kind}"] += 1
    return PlanReview(
        authority_id=authority_id,
        version=version,
        computed_at=computed_at,
        tiers=list(result.tiers),
        coverage=result.buddies.coverage,
        seats=result.roles.seats,
        filled=result.roles.filled,
        per_zone={zone: dict(tiers) for zone, tiers in per_zone.items()},
        changes=dict(changes),
        buddy_gaps=list(result.buddy_gaps),
        open_seats=list(result.roles.open_seats),
        zone_codes=dict(result.zone_codes),
        tier_of_role=dict(result.tier_of_role),
        shelters={shelter_id: name for shelter_id, (_, name) in shelters.items()},
    )


def offers_per_zone(session: Session, *, authority_id: int) -> dict[int | None, Counter[str]]:
    """The offers made so far, per zone (a buddy offer counts in its resident's zone, a role
    offer in its seat's), by where they stand; withdrawn offers are left out."""
    counts: dict[int | None, Counter[str]] = defaultdict(Counter)
    buddy_rows = session.execute(
        select(Person.zone_id, AssignmentOffer.state, func.count())
        .select_from(AssignmentOffer)
        .join(
            BuddyAssignment,
            and_(
                AssignmentOffer.kind == "buddy", BuddyAssignment.id == AssignmentOffer.assignment_id
            ),
        )
        .join(Person, Person.id == BuddyAssignment.resident_id)
        .where(Person.authority_id == authority_id)
        .group_by(Person.zone_id, AssignmentOffer.state)
    )
    for zone_id, state, count in buddy_rows:
        if state in _OFFER_COLUMN:
            counts[zone_id][_OFFER_COLUMN[state]] += count
    shelter_zone: dict[int | None, int | None] = {
        shelter_id: zone_id
        for shelter_id, zone_id in session.execute(
            select(Shelter.id, Shelter.zone_id).where(Shelter.authority_id == authority_id)
        )
    }
    role_rows = session.execute(
        select(
            RoleAssignment.zone_id, RoleAssignment.shelter_id, AssignmentOffer.state, func.count()
        )
        .select_from(AssignmentOffer)
        .join(
            RoleAssignment,
            and_(
                AssignmentOffer.kind == "role", RoleAssignment.id == AssignmentOffer.assignment_id
            ),
        )
        .where(RoleAssignment.authority_id == authority_id)
        .group_by(RoleAssignment.zone_id, RoleAssignment.shelter_id, AssignmentOffer.state)
    )
    for zone_id, shelter_id, state, count in role_rows:
        zone = zone_id if zone_id is not None else shelter_zone.get(shelter_id)
        if state in _OFFER_COLUMN:
            counts[zone][_OFFER_COLUMN[state]] += count
    return dict(counts)


def tier_label(words: Words, profile: Profile, tier: TierResult) -> str:
    """A tier as the officer reads it: "Buddies for residents at high risk", "Roles: ..."."""
    if tier.kind == "buddies":
        return words(f"console.assign.tier_buddies_{tier.what}")
    if tier.what == "rest":
        return words("console.assign.tier_roles_rest")
    names = {role.code: role.names.get(words.language) for role in profile.roles}
    roles = ", ".join(names.get(code, code) for code in tier.what.split(","))
    return words("console.assign.tier_roles", roles=roles)


def zone_views(
    review: PlanReview | None,
    offers: dict[int | None, Counter[str]],
    *,
    zones: list[Zone],
    town_wide: str,
    words: Words,
    profile: Profile,
    authority_code: str,
) -> list[ZoneView]:
    """A card per zone (then one for town-wide seats and people without a zone, when it has
    anything), with the gaps worded as ``hosen gaps`` words them."""
    language: Language = words.language
    gaps: dict[int | None, list[str]] = defaultdict(list)
    if review is not None:
        by_code = {zone.code: zone.id for zone in zones}
        for line in gap_lines(
            buddy_gaps=review.buddy_gaps,
            open_seats=review.open_seats,
            zone_codes=review.zone_codes,
            shelter_names=review.shelters,
            tier_of_role=review.tier_of_role,
            profile=profile,
            authority=profile.authority(authority_code),
            language=language,
        ):
            gaps[by_code.get(line.zone) if line.zone else TOWN_WIDE].append(line.text)
    views = []
    places: list[tuple[int | None, str]] = [(z.id, z.name_in(language)) for z in zones]
    places.append((TOWN_WIDE, town_wide))
    for zone_id, name in places:
        tiers: list[tuple[TierResult, TierCount]] = []
        if review is not None:
            mine = review.per_zone.get(zone_id, {})
            tiers = [(tier, mine.get(tier.number, TierCount())) for tier in review.tiers]
            tiers = [(tier, count) for tier, count in tiers if count.demand]
        changes = review.changes.get(zone_id, Counter()) if review is not None else Counter()
        view = ZoneView(
            zone_id, name, tiers, gaps.get(zone_id, []), changes, offers.get(zone_id, Counter())
        )
        if zone_id is TOWN_WIDE and not (view.tiers or view.gaps or view.changes or view.offers):
            continue
        views.append(view)
    return views


class AssignPages:
    """The assignment run and review page of one :class:`~hosen.console.views.Console`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._reviews: dict[int, PlanReview] = {}
        self._lock = threading.Lock()
        # One dry run or apply at a time per authority (re-entrant: apply may plan again).
        self._running: dict[int, threading.RLock] = defaultdict(threading.RLock)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/assign", self.page, methods=["GET", "POST"]),
            Route("/console/assign/apply", self.apply, methods=["POST"]),
        ]

    def _authority(self, db: Session, visit: Visit, raw: str | None, *, audited: bool) -> Authority:
        from hosen.console.views import NotFound

        authorities = visit.authorities or []
        chosen = [a for a in authorities if str(a.id) == raw] if raw else authorities[:1]
        if not chosen:
            raise NotFound
        self.console._allow(db, visit, StaffAction.RUN_ASSIGNMENT, chosen[0].id, audited=audited)
        return chosen[0]

    def _guard(self, authority_id: int) -> threading.RLock:
        with self._lock:
            return self._running[authority_id]

    def _kept(self, db: Session, authority_id: int) -> PlanReview | None:
        """The review kept for the authority, while the registry is as it was and it is fresh."""
        with self._lock:
            review = self._reviews.get(authority_id)
        if review is None:
            return None
        stale = self.console.clock() - review.computed_at > KEPT_FOR
        if stale or review.version != registry_version(db, authority_id=authority_id):
            with self._lock:
                if self._reviews.get(authority_id) is review:
                    del self._reviews[authority_id]
            return None
        return review

    def _dry_run(self, db: Session, visit: Visit, authority: Authority) -> PlanReview:
        """Plan as ``hosen assign --dry-run`` does, and keep the review (one run at a time per
        authority: a second officer waits for the first's and gets it)."""
        with self._guard(authority.id):
            kept = self._kept(db, authority.id)
            if kept is not None:
                return kept
            now = self.console.clock()
            version = registry_version(db, authority_id=authority.id)
            result = assign_authority(
                db,
                authority=authority,
                profile=self.console.ctx.profile,
                actor=visit.actor,
                now=now,
                dry_run=True,
            )
            review = review_of(
                db, result, authority_id=authority.id, version=version, computed_at=now
            )
            with self._lock:
                self._reviews[authority.id] = review
            return review

    async def page(self, request: Request) -> Response:
        form = await self.console._form(request) if request.method == "POST" else None
        params = request.query_params
        raw = (form or {}).get("authority") or params.get("authority")

        def build(db: Session, visit: Visit) -> Response:
            authority = self._authority(db, visit, raw, audited=True)
            if form is not None:
                with self._lock:
                    self._reviews.pop(authority.id, None)  # "run" computes it again
                self._dry_run(db, visit, authority)
                audit.record(
                    db,
                    actor=visit.actor,
                    action="assign.dry_run",
                    at=self.console.clock(),
                    authority_id=authority.id,
                )
                return self.console._redirect(
                    request, visit, f"/console/assign?authority={authority.id}"
                )
            notice = None
            if params.get("changed") == "1":
                notice = visit.words("console.assign.registry_changed")
            return self._draw(request, db, visit, authority, notice=notice, run=params.get("run"))

        return await self.console._page(request, build, form=form)

    def _draw(
        self,
        request: Request,
        db: Session,
        visit: Visit,
        authority: Authority,
        *,
        notice: str | None = None,
        run: str | None = None,
        status: int = 200,
        error: str | None = None,
    ) -> Response:
        words, profile = visit.words, self.console.ctx.profile
        review = self._kept(db, authority.id)
        zones = list(
            db.scalars(select(Zone).where(Zone.authority_id == authority.id).order_by(Zone.id))
        )
        title = authority_name(db, profile, authority.id, words.language)
        applied = None
        if run and run.isdecimal():
            applied = db.get(AssignmentRun, int(run))
            if applied is None or applied.authority_id != authority.id:
                applied = None
        return self.console._html(
            request,
            visit,
            "assign.html",
            status,
            authority=authority,
            title_name=title,
            review=review,
            totals=review.total_changes() if review is not None else Counter(),
            zones=zone_views(
                review,
                offers_per_zone(db, authority_id=authority.id),
                zones=zones,
                town_wide=words("gaps.town_wide"),
                words=words,
                profile=profile,
                authority_code=authority.code,
            ),
            tier_label=lambda tier: tier_label(words, profile, tier),
            changes=CHANGES,
            offer_columns=OFFER_COLUMNS,
            applied=applied,
            notice=notice,
            error=error,
        )

    async def apply(self, request: Request) -> Response:
        form = await self.console._form(request)

        def build(db: Session, visit: Visit) -> Response:
            authority = self._authority(db, visit, form.get("authority"), audited=True)
            if form.get("confirm") != "yes":
                error = visit.words("console.assign.confirm_missing")
                return self._draw(request, db, visit, authority, status=400, error=error)
            back = f"/console/assign?authority={authority.id}"
            with self._guard(authority.id):
                review = self._kept(db, authority.id)
                if review is None or review.version != form.get("version"):
                    # The registry moved since the plan was reviewed: show the plan it makes now.
                    with self._lock:
                        self._reviews.pop(authority.id, None)
                    self._dry_run(db, visit, authority)
                    return self.console._redirect(request, visit, f"{back}&changed=1")
                result = assign_authority(
                    db,
                    authority=authority,
                    profile=self.console.ctx.profile,
                    actor=visit.actor,
                    now=self.console.clock(),
                )
                with self._lock:
                    self._reviews.pop(authority.id, None)
            return self.console._redirect(request, visit, f"{back}&run={result.run_id}")

        return await self.console._page(request, build, form=form)
