"""The gap report in words: each zone's gaps, their true cause, and what recruitment would close
them, in any language.

Lines come from the catalogs (``assign.cause.*``, ``assign.gap.*``, ``assign.role_reason.*``), so the same report can go to an officer on the
command line or, later, on Telegram in their language. Counts and codes only: no personal data.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.i18n import t
from config.languages import Language
from config.profile import AuthorityProfile, Profile
from registry.assignment.roles import OpenSeats, Scope
from registry.assignment.tiers import BuddyGap


@dataclass(frozen=True)
class GapLine:
    zone: str | None  # zone code (None: no zone, or a town-wide role)
    kind: str  # "buddy" or "role"
    count: int  # volunteers to recruit (buddies) or open seats (roles)
    text: str
    cause: str  # the machine-readable cause (``tiers.Cause`` or ``roles.Unfilled``)


def cause_line(gap: BuddyGap, *, zone: str, reach_m: int, language: Language) -> str:
    """One gap of buddies and its true cause, in words (``assign.cause.*``)."""
    return t(
        language,
        f"assign.cause.{gap.cause.value}",
        zone=zone,
        tier=gap.tier,
        residents=gap.residents,
        reach=reach_m,
        count=gap.recruit,
        volunteers=gap.in_reach,
        in_roles=gap.in_roles,
        tiers=", ".join(str(n) for n in gap.role_tiers),
        language=t(language, f"assign.language.{gap.language}") if gap.language else "",
    )


def gap_lines(
    *,
    buddy_gaps: list[BuddyGap],
    open_seats: list[OpenSeats],
    zone_codes: dict[int, str],
    shelter_names: dict[int, str],
    tier_of_role: dict[str, int],
    profile: Profile,
    authority: AuthorityProfile,
    language: Language,
) -> list[GapLine]:
    zone_names = {z.code: z.names.get(language) for z in authority.zones}

    def zone_label(zone_id: int | None) -> tuple[str | None, str]:
        code = zone_codes.get(zone_id) if zone_id is not None else None
        if code is None:
            return None, t(language, "assign.no_zone")
        return code, zone_names.get(code, code)

    lines: list[GapLine] = []
    for gap in buddy_gaps:
        code, label = zone_label(gap.zone_id)
        text = cause_line(gap, zone=label, reach_m=profile.walking_distance_m, language=language)
        lines.append(GapLine(code, "buddy", gap.recruit, text, gap.cause.value))

    skill_names = {s.code: s.names.get(language) for s in profile.skills}
    role_names = {r.code: r.names.get(language) for r in profile.roles}
    for seats in open_seats:
        quota = seats.quota
        if quota.scope == Scope.TOTAL:
            code, label = None, authority.names.get(language)
        else:
            code, label = zone_label(quota.zone_id)
            if quota.shelter_id is not None:
                label = f"{label} · {shelter_names.get(quota.shelter_id, '?')}"
        role = role_names.get(quota.role_code, quota.role_code)
        if quota.required_skills:
            skills = ", ".join(sorted(skill_names.get(s, s) for s in quota.required_skills))
            text = t(
                language,
                "assign.gap.role_skills",
                zone=label,
                count=seats.open,
                role=role,
                skills=skills,
            )
        else:
            text = t(language, "assign.gap.role", zone=label, count=seats.open, role=role)
        why = t(
            language,
            f"assign.role_reason.{seats.reason.value}",
            eligible=seats.eligible,
            engaged=seats.engaged,
            tier=tier_of_role.get(quota.role_code, 0),
            tiers=", ".join(str(n) for n in seats.engaged_tiers),
        )
        lines.append(GapLine(code, "role", seats.open, f"{text}: {why}", seats.reason.value))
    lines.sort(key=lambda line: (line.zone is None, line.zone or "", line.kind, -line.count))
    return lines
