"""What starting a campaign will do, said before it is started: the confirmation's numbers.

One function, :func:`estimate_campaign`, used by the officers' Telegram/SMS commands and by
``hosen campaign start`` alike: how many people, in which zones, through which channel each is
first tried, how many SMS segments the first wave costs, and how long sending takes at the
configured rates. It resolves the audience exactly as :func:`dispatch.campaigns.start_campaign`
will, and renders each SMS text exactly as it will be queued, so the numbers are the real ones.
Nothing is written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t, tn
from config.languages import Language
from config.profile import Profile, QuietHours
from config.settings import Settings
from dispatch.campaigns import Audience, checkin_message, first_name, marked, resolve_audience
from dispatch.models import CampaignKind, CampaignMode
from dispatch.segments import count_segments
from registry.models import Authority, Channel, Zone

NO_ZONE = "-"


@dataclass(frozen=True)
class Estimate:
    recipients: int
    zones: dict[str, int]  # zone code -> people (NO_ZONE for people without a zone)
    telegram: int  # first tried on Telegram
    sms: int  # first tried by SMS
    no_channel: int  # nothing to message: their buddy is sent at the first sweep (check-ins)
    sms_segments: int  # the first wave's SMS segments (what the bill counts)
    seconds: float  # sending the first wave at the configured rates
    quiet_hours: bool = False  # a drill now would fall in the authority's quiet hours
    per_language: dict[str, int] = field(default_factory=dict)
    # Channel -> people first tried on it while it is not configured (see unconfigured_warnings).
    unconfigured: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipients": self.recipients,
            "zones": dict(self.zones),
            "telegram": self.telegram,
            "sms": self.sms,
            "no_channel": self.no_channel,
            "sms_segments": self.sms_segments,
            "seconds": round(self.seconds, 1),
            "quiet_hours": self.quiet_hours,
            "per_language": dict(self.per_language),
            "unconfigured": dict(self.unconfigured),
        }


def quiet_hours_of(profile: Profile | None, authority: Authority) -> QuietHours:
    for entry in profile.authorities if profile else ():
        if entry.code == authority.code:
            return entry.quiet_hours
    return QuietHours()


def in_quiet_hours(
    *, profile: Profile | None, authority: Authority, settings: Settings, now: datetime
) -> bool:
    """Whether ``now`` is inside the authority's quiet hours (local time)."""
    local = now.astimezone(settings.zone_info).time()
    return quiet_hours_of(profile, authority).contains(local)


def sms_text(
    *, kind: CampaignKind, mode: CampaignMode, language: str, name: str | None, text: str | None
) -> str:
    """The first SMS a recipient gets, as :func:`dispatch.campaigns.start_campaign` queues it."""
    if kind == CampaignKind.ANNOUNCEMENT:
        return marked(language, mode, (text or "").strip())
    message, _ = checkin_message(
        language=language, name=name, campaign_id=0, mode=mode, channel=Channel.SMS
    )
    return message


def estimate_campaign(
    session: Session,
    *,
    authority: Authority,
    audience: Audience,
    kind: CampaignKind,
    mode: CampaignMode,
    settings: Settings,
    now: datetime,
    text: str | None = None,
    profile: Profile | None = None,
) -> Estimate:
    """The confirmation's numbers for a campaign not started yet (reads only)."""
    recipients = resolve_audience(session, authority=authority, audience=audience)
    zone_codes = dict(
        session.execute(select(Zone.id, Zone.code).where(Zone.authority_id == authority.id)).all()
    )
    zones: Counter[str] = Counter()
    channels: Counter[Channel] = Counter()
    languages: Counter[str] = Counter()
    # Texts differ only by language and first name: count each distinct text once.
    sms_texts: Counter[tuple[str, str]] = Counter()
    for person in recipients:
        zones[zone_codes.get(person.zone_id, NO_ZONE) if person.zone_id else NO_ZONE] += 1
        channel = person.first_channel()
        channels[channel] += 1
        languages[person.language.value] += 1
        if channel == Channel.SMS:
            name = first_name(person.name, person.language) if kind == CampaignKind.CHECKIN else ""
            sms_texts[(person.language.value, name)] += 1
    segments = 0
    if kind != CampaignKind.TASKS:
        for (language, name), count in sms_texts.items():
            rendered = sms_text(kind=kind, mode=mode, language=language, name=name, text=text)
            segments += count_segments(rendered) * count
    telegram, sms = channels[Channel.TELEGRAM], channels[Channel.SMS]
    unconfigured = {
        channel.value: count
        for channel, count, on in (
            (Channel.TELEGRAM, telegram, settings.telegram_enabled),
            (Channel.SMS, sms, settings.sms_enabled),
        )
        if count and not on
    }
    # The two channels send side by side, each at its own shared rate.
    seconds = max(telegram / settings.telegram_rate_per_second, sms / settings.sms_rate_per_second)
    quiet = mode == CampaignMode.DRILL and in_quiet_hours(
        profile=profile, authority=authority, settings=settings, now=now
    )
    return Estimate(
        recipients=len(recipients),
        zones=dict(sorted(zones.items())),
        telegram=telegram,
        sms=sms,
        no_channel=channels[Channel.NONE],
        sms_segments=segments,
        seconds=seconds,
        quiet_hours=quiet,
        per_language=dict(sorted(languages.items())),
        unconfigured=unconfigured,
    )


# The settings that turn a channel on, for an operator at the command line.
CHANNEL_SETTINGS = {
    Channel.TELEGRAM.value: "HOSEN_TELEGRAM_TOKEN",
    Channel.SMS.value: "HOSEN_TWILIO_ACCOUNT_SID, HOSEN_TWILIO_AUTH_TOKEN, HOSEN_TWILIO_FROM",
}


def unconfigured_warnings(
    estimate: Estimate,
    *,
    language: Language | str,
    kind: CampaignKind,
    ladder: Any,
    settings_hint: bool = False,
) -> list[str]:
    """One warning per channel the audience needs that is not configured, in the officer's
    language: how many people it concerns and what will happen to them (short enough for a
    staff SMS). ``ladder``: the campaign's :class:`dispatch.campaigns.Ladder` (its buddy visit
    and unreached times); ``settings_hint``: also name the settings (the command line)."""
    warnings = []
    for channel, count in estimate.unconfigured.items():
        head = tn(language, f"campaign.unconfigured.{channel}", count)
        if kind == CampaignKind.CHECKIN:
            then = t(
                language,
                "campaign.unconfigured.checkin",
                visit=minutes(language, ladder.visit_after.total_seconds()),
                unreached=minutes(language, ladder.unreached_after.total_seconds()),
            )
        else:
            then = t(language, "campaign.unconfigured.not_checkin")
        hint = CHANNEL_SETTINGS[channel] if settings_hint else ""
        if hint:
            then += " " + t(language, "campaign.unconfigured.setting", settings=hint)
        warnings.append(f"{head} {then}")
    return warnings


def minutes(language: Language | str, seconds: float) -> str:
    """A duration as the officer reads it: "90 s", "45 min", "2 h", "2 h 30 min"."""
    if seconds < 90:
        return t(language, "officer.duration.seconds", seconds=max(1, round(seconds)))
    whole = round(seconds / 60)
    if whole < 120:
        return t(language, "officer.duration.minutes", minutes=whole)
    hours, rest = divmod(whole, 60)
    if rest == 0:
        return t(language, "campaign.duration.hours", hours=hours)
    return t(language, "campaign.duration.hours_minutes", hours=hours, minutes=rest)
