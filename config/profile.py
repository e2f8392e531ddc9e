"""The municipality profile: authorities, zones, shelters, skills and the emergency-role catalogue.

One service may serve a regional cluster of several authorities. The profile is a TOML file
(``HOSEN_PROFILE``), validated here so that a typo fails at start with the line that names it.
"""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.languages import ALL_LANGUAGES, Language

Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]


class ProfileError(Exception):
    """The profile file is missing or invalid; ``str()`` is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_Strict):
    """A display name in every language Hosen speaks."""

    he: str
    ar: str
    en: str
    ru: str
    am: str

    def get(self, language: Language) -> str:
        return str(getattr(self, language.value))


class ZoneProfile(_Strict):
    code: Code
    names: Names
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class ShelterProfile(_Strict):
    code: Code
    zone: Code
    name: str
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    capacity: int = Field(gt=0)


class QuietHours(_Strict):
    """Drills are not started inside this window (local time); emergencies ignore it."""

    start: time = time(22, 0)
    end: time = time(7, 0)

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class Timings(_Strict):
    """How long the dispatcher waits, per authority, in minutes (``hosen campaign start`` flags
    override the ladder's for one campaign).

    The check-in ladder: a reminder after ``reminder``, a buddy's home visit after ``visit``, the
    officer's unreached list after ``unreached`` (all counted from the start). A help alert nobody
    has taken goes to the next officer on duty after ``alert_climb``, and after as long again to
    all of them.

    An offer of a role or a buddy pair that its volunteer has not answered is reminded after
    ``offer_reminder``, and planned again (someone else is asked) ``offer_expiry`` after that.
    """

    reminder: int = Field(default=15, ge=1)
    visit: int = Field(default=45, ge=1)
    unreached: int = Field(default=120, ge=1)
    alert_climb: int = Field(default=10, ge=1)
    # Phone calls (see :class:`VoiceProfile`): whether check-ins call (a landline resident
    # first; a mobile one before the buddy's visit), and how a call nobody answered, a busy line
    # or an answering machine is tried again: ``call_retries`` more times, ``call_retry``
    # minutes apart, before the ladder climbs to the visit.
    calls: bool = False
    call_retry: int = Field(default=10, ge=1)
    call_retries: int = Field(default=2, ge=0, le=5)
    offer_reminder: int = Field(default=24 * 60, ge=1)
    offer_expiry: int = Field(default=24 * 60, ge=1)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        if not self.reminder < self.visit < self.unreached:
            raise ValueError("timings: reminder < visit < unreached")
        return self


class AuthorityProfile(_Strict):
    code: Code
    names: Names
    zones: list[ZoneProfile] = Field(min_length=1)
    shelters: list[ShelterProfile] = []
    quiet_hours: QuietHours = QuietHours()
    timings: Timings = Timings()

    @model_validator(mode="after")
    def _shelters_in_known_zones(self) -> Self:
        zones = {zone.code for zone in self.zones}
        if len(zones) != len(self.zones):
            raise ValueError(f"authority {self.code}: zone codes repeat")
        for shelter in self.shelters:
            if shelter.zone not in zones:
                raise ValueError(f"shelter {shelter.code}: unknown zone {shelter.zone!r}")
        return self


class SkillProfile(_Strict):
    code: Code
    names: Names


class RoleProfile(_Strict):
    """One entry of the emergency-role catalogue.

    A quota is per zone or per shelter (or neither: a town-wide role with ``quota_total``).
    """

    code: Code
    names: Names
    duties: Names | None = None  # what the role means, told to the volunteer it is offered to
    required_skills: list[Code] = []
    min_age: int = Field(default=18, ge=14, le=99)
    quota_per_zone: int | None = Field(default=None, ge=1)
    quota_per_shelter: int | None = Field(default=None, ge=1)
    quota_total: int | None = Field(default=None, ge=1)
    home_visits: bool = False

    @model_validator(mode="after")
    def _one_quota_kind(self) -> Self:
        kinds = [self.quota_per_zone, self.quota_per_shelter, self.quota_total]
        if sum(k is not None for k in kinds) > 1:
            raise ValueError(
                f"role {self.code}: give one of quota_per_zone, quota_per_shelter, quota_total"
            )
        return self


REST = "rest"


class TierProfile(_Strict):
    """One step of the assignment policy: some roles, or buddies for one class of residents.

    ``roles``: role codes, or ``"rest"`` for every role with seats that no other tier names.
    ``buddies``: ``"high_risk"`` (see :class:`HighRiskProfile`) or ``"rest"`` (every other
    resident who may need help).
    """

    roles: list[Code] | Literal["rest"] | None = None
    buddies: Literal["high_risk", "rest"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.roles is None) == (self.buddies is None):
            raise ValueError("a tier has either roles or buddies")
        return self


class HighRiskProfile(_Strict):
    """Who counts as a resident at high risk: any of ``needs``, or living alone with any of
    ``living_alone_with`` (need codes of the registry)."""

    needs: list[Code] = ["powered_medical_equipment", "bedridden"]
    living_alone_with: list[Code] = ["mobility", "sight", "hearing", "cognitive"]


def _life_safety_first() -> list[TierProfile]:
    return [TierProfile(buddies="high_risk"), TierProfile(roles=REST), TierProfile(buddies=REST)]


class AssignmentPolicy(_Strict):
    """The order in which the assignment engine fills the demand, most important first. Each
    tier is filled as well as it can be with the volunteers the tiers before it left free."""

    tiers: list[TierProfile] = Field(default_factory=_life_safety_first, min_length=1)
    high_risk: HighRiskProfile = HighRiskProfile()

    @model_validator(mode="after")
    def _each_demand_once(self) -> Self:
        named = [code for tier in self.tiers if isinstance(tier.roles, list) for code in tier.roles]
        if len(set(named)) != len(named):
            raise ValueError("assignment.tiers: a role is named in two tiers")
        for kind in ("roles", "buddies"):
            rests = [t for t in self.tiers if getattr(t, kind) == REST]
            if len(rests) > 1:
                raise ValueError(f"assignment.tiers: {kind} = 'rest' is given twice")
        buddies = [t.buddies for t in self.tiers if t.buddies is not None]
        if len(set(buddies)) != len(buddies):
            raise ValueError("assignment.tiers: a class of buddies is given twice")
        if REST not in buddies:
            raise ValueError("assignment.tiers: no tier gives buddies = 'rest'")
        return self


class VoiceLanguage(_Strict):
    """How one language sounds on a call: a text-to-speech ``voice`` of Twilio's ``<Say>``
    (e.g. ``Google.he-IL-Standard-A``) with its ``language`` code, or ``recordings``: a
    directory, under the profile's ``prompts_dir``, of recorded prompts played with ``<Play>``
    (``<prompt>.wav``, one file for each prompt of :data:`dispatch.channels.voice.PROMPTS`).
    A language with both plays a recording where one exists and says the rest."""

    voice: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,60}$")
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")
    recordings: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,40}$")

    @model_validator(mode="after")
    def _says_or_plays(self) -> Self:
        if self.recordings is None and (self.voice is None or self.language is None):
            raise ValueError("voice: a language needs a voice and its language, or recordings")
        return self


class VoiceProfile(_Strict):
    """Which voice or recording each language uses on a call (every language Hosen speaks)."""

    prompts_dir: str = "var/prompts"  # relative to the working directory, or absolute
    languages: dict[Language, VoiceLanguage]

    @model_validator(mode="after")
    def _every_language(self) -> Self:
        missing = [lang.value for lang in ALL_LANGUAGES if lang not in self.languages]
        if missing:
            raise ValueError(f"voice.languages: missing {', '.join(missing)}")
        return self


class Profile(_Strict):
    name: str
    authorities: list[AuthorityProfile] = Field(min_length=1)
    voice: VoiceProfile | None = None
    skills: list[SkillProfile] = Field(min_length=1)
    roles: list[RoleProfile] = Field(min_length=1)
    walking_distance_m: int = Field(default=1500, gt=0)
    assignment: AssignmentPolicy = AssignmentPolicy()
    # The language the officers' reports and CLI text are in unless asked otherwise (--lang);
    # none given: Hebrew.
    language: Language | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        skills = {skill.code for skill in self.skills}
        for role in self.roles:
            unknown = set(role.required_skills) - skills
            if unknown:
                raise ValueError(f"role {role.code}: unknown skills {sorted(unknown)}")
        for label, codes in (
            ("authority", [a.code for a in self.authorities]),
            ("skill", [s.code for s in self.skills]),
            ("role", [r.code for r in self.roles]),
        ):
            if len(set(codes)) != len(codes):
                raise ValueError(f"{label} codes repeat")
        self._policy_names_roles_with_seats()
        return self

    def _policy_names_roles_with_seats(self) -> None:
        seated = {
            r.code for r in self.roles if r.quota_per_zone or r.quota_per_shelter or r.quota_total
        }
        tiers = self.assignment.tiers
        named = {code for t in tiers if isinstance(t.roles, list) for code in t.roles}
        unknown = named - seated
        if unknown:
            raise ValueError(f"assignment.tiers: {sorted(unknown)} are not roles with seats")
        if seated - named and not any(t.roles == REST for t in tiers):
            missing = sorted(seated - named)
            raise ValueError(
                f"assignment.tiers: no tier for the roles {missing} (add roles = 'rest')"
            )

    def tier_of_role(self, code: str) -> int:
        """The tier (1-based) that fills this role's seats."""
        rest = 0
        for number, tier in enumerate(self.assignment.tiers, start=1):
            if isinstance(tier.roles, list) and code in tier.roles:
                return number
            if tier.roles == REST:
                rest = number
        return rest

    def authority(self, code: str) -> AuthorityProfile:
        for authority in self.authorities:
            if authority.code == code:
                return authority
        raise KeyError(code)

    def role(self, code: str) -> RoleProfile:
        for role in self.roles:
            if role.code == code:
                return role
        raise KeyError(code)


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file, raising :class:`ProfileError` with one clear line."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"HOSEN_PROFILE: no such file {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"HOSEN_PROFILE: {path} is not valid TOML: {exc}") from None
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ProfileError(f"HOSEN_PROFILE: {path}: {where}: {message}") from None


__all__ = ["ALL_LANGUAGES", "Profile", "ProfileError", "load_profile"]

DEFAULT_PROFILE_PATH = Path(__file__).parent / "profiles" / "kiryat-tamar.toml"
