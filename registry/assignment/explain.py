"""Why one person got what they got: their role or buddies, as stored and as planned now.

For officers (``hosen assign --explain``, ``hosen people show``). The stored state is what the
last run wrote and what volunteers answered (the rows' own status: proposed, confirmed,
declined); the plan is a dry run of the profile's policy now, with the tier, distances, skills,
languages and the competing demand behind it. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from config.profile import Profile, TierProfile
from registry.assignment.buddies import Volunteer, not_buddy
from registry.assignment.report import cause_line
from registry.assignment.roles import RoleVolunteer, not_eligible, walk_m
from registry.assignment.store import AssignmentResult, Registry, load_registry, plan
from registry.assignment.stored import stored_assignments
from registry.assignment.tiers import explain_gaps
from registry.models import (
    Authority,
    Person,
)
from registry.rules import age, distance_m


@dataclass
class Explanation:
    person_id: int
    stored: dict[str, list[dict[str, Any]]]
    planned: dict[str, Any] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)  # sentences for the officer


def explain_person(
    session: Session,
    *,
    authority: Authority,
    profile: Profile,
    person: Person,
    now: datetime,
    language: Language = Language.EN,
) -> Explanation:
    """What the person holds (stored), what the policy plans for them now, and why."""
    registry = load_registry(session, authority=authority, profile=profile, now=now)
    result = plan(registry, profile=profile, now=now)
    out = Explanation(person.id, stored_assignments(session, person_id=person.id))
    reach = profile.walking_distance_m
    tiers = profile.assignment.tiers
    role_names = {r.code: r.names.get(language) for r in profile.roles}
    volunteer = next((v for v in registry.volunteers if v.id == person.id), None)
    role_volunteer = next((v for v in registry.role_volunteers if v.id == person.id), None)
    resident = next((r for r in registry.residents if r.id == person.id), None)
    residents = {r.id: r for r in registry.residents}
    volunteers = {v.id: v for v in registry.volunteers}
    zone_codes = registry.zone_codes
    year = now.year

    if volunteer is not None and role_volunteer is not None:
        holder = next((h for h in result.roles.holders if h.person_id == person.id), None)
        pairs = [b for b in result.buddies.pairs if b.volunteer_id == person.id]
        if holder is not None:
            quota = next(q for q in registry.quotas if q.key == holder.key)
            tier = result.tier_of_role.get(holder.role_code, 0)
            eligible = sum(
                1
                for v in registry.role_volunteers
                if not_eligible(v, quota, year=year, reach_m=reach) is None
            )
            walk = walk_m(role_volunteer, quota, reach)
            out.planned["role"] = {
                "role": holder.role_code,
                "tier": tier,
                "zone": zone_codes.get(holder.zone_id) if holder.zone_id else None,
                "shelter_id": holder.shelter_id,
                "walk_m": walk,
                "required_skills": sorted(quota.required_skills),
                "seats": quota.seats,
                "eligible": eligible,
            }
            skills = ", ".join(sorted(quota.required_skills)) or "none"
            out.why.append(
                f"role “{role_names.get(holder.role_code, holder.role_code)}” of tier {tier} "
                f"({_tier_text(tiers[tier - 1])}): {quota.seats} seats here, {eligible} "
                f"volunteers qualify (age ≥ {quota.min_age}, skills: {skills}); "
                f"{walk} m to the place"
            )
            out.why.append("a volunteer who holds a role takes no buddies")
        for b in pairs:
            r = residents[b.resident_id]
            tier = result.tier_of_resident.get(r.id, 0)
            out.planned.setdefault("checks_on", []).append(
                {
                    "resident_id": r.id,
                    "rank": b.rank,
                    "tier": tier,
                    "distance_m": b.distance_m,
                    "language": r.language,
                }
            )
            where = f"{b.distance_m} m away" if b.distance_m is not None else "same zone"
            out.why.append(
                f"{'primary' if b.rank == 1 else 'backup'} buddy of resident {r.id} "
                f"(tier {tier}: {_tier_text(tiers[tier - 1])}), {where}, speaks {r.language}"
            )
        if holder is None and not pairs:
            out.why.append(_idle(volunteer, role_volunteer, result, registry, year, reach))
        if pairs:
            out.why.append(f"check-in capacity {volunteer.capacity}, {len(pairs)} taken")

    if resident is not None:
        tier = result.tier_of_resident.get(resident.id, 0)
        pairs = [b for b in result.buddies.pairs if b.resident_id == resident.id]
        out.planned["tier"] = tier
        out.planned["buddies"] = [
            {"volunteer_id": b.volunteer_id, "rank": b.rank, "distance_m": b.distance_m}
            for b in pairs
        ]
        out.why.append(f"resident of tier {tier} ({_tier_text(tiers[tier - 1])})")
        for b in pairs:
            v = volunteers[b.volunteer_id]
            where = f"{b.distance_m} m away" if b.distance_m is not None else "same zone"
            out.why.append(
                f"{'primary' if b.rank == 1 else 'backup'} buddy: volunteer {v.id}, {where}, "
                f"speaks {', '.join(sorted(v.speaks))}"
            )
        if not pairs:
            role_tier = {
                h.person_id: result.tier_of_role.get(h.role_code, 0) for h in result.roles.holders
            }
            _, [gap] = explain_gaps(
                [resident],
                registry.volunteers,
                [],
                tier_of_resident=result.tier_of_resident,
                role_tier=role_tier,
                year=year,
                reach_m=reach,
            )
            out.planned["cause"] = gap.cause.value
            code = zone_codes.get(resident.zone_id) if resident.zone_id else None
            names = {z.code: z.names.get(language) for z in profile.authority(authority.code).zones}
            zone = names.get(code, code) if code else t(language, "assign.no_zone")
            out.why.append(cause_line(gap, zone=zone, reach_m=reach, language=language))
    if volunteer is None and resident is None:
        out.why.append("neither a volunteer nor a resident who may need help (or not active)")
    out.why.append(_stored_versus_planned(out))
    return out


def _tier_text(tier: TierProfile) -> str:
    if tier.roles is not None:
        return "roles " + (", ".join(tier.roles) if isinstance(tier.roles, list) else "rest")
    return f"buddies {tier.buddies}"


def _idle(
    volunteer: Volunteer,
    role_volunteer: RoleVolunteer,
    result: AssignmentResult,
    registry: Registry,
    year: int,
    reach: int,
) -> str:
    """Why an active volunteer has neither a role nor buddies in the plan."""
    open_seats = [
        s.quota.role_code
        for s in result.roles.open_seats
        if not_eligible(role_volunteer, s.quota, year=year, reach_m=reach) is None
    ]
    declined = sorted(
        code for code in open_seats if (volunteer.id, code) in registry.declined_roles
    )
    seats = (
        f"declined the open role seats they qualify for ({', '.join(declined)})"
        if declined
        else "no open role seat they qualify for"
    )
    reason = not_buddy(volunteer, year)
    if reason is not None:
        return f"takes no buddies: {reason.value} (age {age(volunteer.birth_year, year)}); {seats}"
    covered = {b.resident_id for b in result.buddies.pairs}
    near = [
        r
        for r in registry.residents
        if r.lat is not None
        and r.lon is not None
        and volunteer.lat is not None
        and volunteer.lon is not None
        and distance_m(r.lat, r.lon, volunteer.lat, volunteer.lon) <= reach
    ]
    waiting = [r for r in near if r.id not in covered]
    return (
        f"free: {len(near)} residents within {reach} m, {len(waiting)} of them without a buddy "
        f"(the others have nearer volunteers); {seats}"
    )


def _stored_versus_planned(out: Explanation) -> str:
    stored_roles = {r["role"] for r in out.stored["roles"] if r["status"] != "declined"}
    planned_role = {out.planned["role"]["role"]} if "role" in out.planned else set()
    stored_pairs = {
        (p["resident_id"], p["rank"]) for p in out.stored["checks_on"] if p["status"] != "declined"
    }
    planned_pairs = {(p["resident_id"], p["rank"]) for p in out.planned.get("checks_on", [])}
    stored_buddies = {
        (p["volunteer_id"], p["rank"]) for p in out.stored["buddies"] if p["status"] != "declined"
    }
    planned_buddies = {(p["volunteer_id"], p["rank"]) for p in out.planned.get("buddies", [])}
    if (stored_roles, stored_pairs, stored_buddies) == (
        planned_role,
        planned_pairs,
        planned_buddies,
    ):
        return "the stored assignment is what the policy plans now"
    return "a new run of hosen assign would change this person's assignment"
