"""Bring the authority, zone and shelter rows in line with the municipality profile."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import DEFAULT_PROFILE_PATH, Profile, load_profile
from registry.models import Authority, Shelter, Zone


@dataclass
class Directory:
    """The profile's places as database rows, looked up by code."""

    authorities: dict[str, Authority] = field(default_factory=dict)
    zones: dict[tuple[int, str], Zone] = field(default_factory=dict)
    shelters: dict[tuple[int, str], Shelter] = field(default_factory=dict)

    def zone(self, authority: Authority, code: str) -> Zone | None:
        return self.zones.get((authority.id, code))


def sync_profile(session: Session, profile: Profile) -> Directory:
    """Create or rename authorities, zones and shelters by code. Never deletes: people refer to them."""
    directory = Directory()
    existing_auth = {a.code: a for a in session.scalars(select(Authority))}
    for ap in profile.authorities:
        authority = existing_auth.get(ap.code) or Authority(code=ap.code, name="")
        authority.name = ap.names.get(Language.EN)
        authority.reminder_after = ap.timings.reminder * 60
        authority.visit_after = ap.timings.visit * 60
        authority.unreached_after = ap.timings.unreached * 60
        authority.alert_climb_after = ap.timings.alert_climb * 60
        authority.calls = ap.timings.calls
        authority.call_retry_after = ap.timings.call_retry * 60
        authority.call_retries = ap.timings.call_retries
        session.add(authority)
        session.flush()
        directory.authorities[ap.code] = authority

        zones = {
            z.code: z
            for z in session.scalars(select(Zone).where(Zone.authority_id == authority.id))
        }
        for zp in ap.zones:
            zone = zones.get(zp.code) or Zone(authority_id=authority.id, code=zp.code, name="")
            zone.name, zone.lat, zone.lon = zp.names.get(Language.EN), zp.lat, zp.lon
            zone.names = {language.value: zp.names.get(language) for language in Language}
            session.add(zone)
            directory.zones[(authority.id, zp.code)] = zone
        session.flush()

        shelters = {
            s.code: s
            for s in session.scalars(select(Shelter).where(Shelter.authority_id == authority.id))
        }
        for sp in ap.shelters:
            zone = directory.zones[(authority.id, sp.zone)]
            shelter = shelters.get(sp.code) or Shelter(
                authority_id=authority.id,
                code=sp.code,
                zone_id=zone.id,
                name="",
                capacity=sp.capacity,
            )
            shelter.zone_id, shelter.name = zone.id, sp.name
            shelter.lat, shelter.lon, shelter.capacity = sp.lat, sp.lon, sp.capacity
            session.add(shelter)
            directory.shelters[(authority.id, sp.code)] = shelter
        session.flush()
    return directory


def sync_sample_profile(session: Session) -> Authority:
    """The embedded sample profile (Kiryat Tamar) synced, and its first authority: the set-up of
    benchmarks and of tests with a database of their own. The caller commits."""
    directory = sync_profile(session, load_profile(DEFAULT_PROFILE_PATH))
    return next(iter(directory.authorities.values()))
