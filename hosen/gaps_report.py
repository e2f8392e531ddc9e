"""The map of needs, answers and gaps (``registry.gaps``) as text for a terminal and as an HTML
page (a Jinja2 template with autoescaping), every word from the message catalogs in the
officer's language, ``lang`` and ``dir`` set."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from config.i18n import t
from config.languages import Language
from registry.gaps import NeedsMap, ZoneMap


@dataclass(frozen=True)
class ZoneView:
    code: str | None
    name: str
    needs_line: str
    needs: list[str]
    buddies_line: str
    volunteers_line: str
    roles_line: str
    groups_line: str
    resources_line: str
    gaps_title: str
    gaps: list[str]


def zone_view(zone: ZoneMap, language: Language) -> ZoneView:
    def say(key: str, **params: object) -> str:
        return t(language, f"gaps.{key}", **params)

    resources = ", ".join(
        say(
            "resource_line",
            kind=t(language, f"resources.kind.{kind}"),
            available=counts["available"],
            total=counts["total"],
        )
        for kind, counts in sorted(zone.resources.items())
    )
    return ZoneView(
        code=zone.zone,
        name=zone.name if zone.zone else say("town_wide"),
        needs_line=say("needs", count=zone.residents) if zone.residents else say("no_needs"),
        needs=[
            f"{t(language, f'bot.needs.{need}')}: {count}"
            for need, count in sorted(zone.needs.items(), key=lambda item: -item[1])
        ],
        buddies_line=say(
            "buddies",
            confirmed=zone.buddy_confirmed,
            offered=zone.buddy_offered,
            none=zone.no_buddy,
        ),
        volunteers_line=say("volunteers", count=zone.volunteers),
        roles_line=say(
            "roles", count=sum(zone.roles_filled.values()), confirmed=zone.roles_confirmed
        ),
        groups_line=say("groups", names=", ".join(zone.groups))
        if zone.groups
        else say("no_groups"),
        resources_line=say("resources", list=resources) if resources else say("no_resources"),
        gaps_title=say("gaps") if zone.gaps else say("no_gaps"),
        gaps=[gap.text for gap in zone.gaps],
    )


def as_text(needs_map: NeedsMap, authority_name: str) -> str:
    language = Language(needs_map.language)
    lines = [t(language, "gaps.title", authority=authority_name), ""]
    for zone in needs_map.zones:
        view = zone_view(zone, language)
        lines.append(f"== {view.name}" + (f" ({view.code})" if view.code else ""))
        lines.append(f"  {view.needs_line}")
        lines.extend(f"    {need}" for need in view.needs)
        for line in (view.buddies_line, view.volunteers_line, view.roles_line, view.groups_line):
            lines.append(f"  {line}")
        lines.append(f"  {view.resources_line}")
        lines.append(f"  {view.gaps_title}")
        lines.extend(f"    - {gap}" for gap in view.gaps)
        lines.append("")
    return "\n".join(lines)


def as_html(needs_map: NeedsMap, authority_name: str) -> str:
    language = Language(needs_map.language)
    environment = Environment(
        loader=PackageLoader("hosen", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    template = environment.get_template("gaps.html")
    return template.render(
        lang=language.value,
        dir="rtl" if language.rtl else "ltr",
        title=t(language, "gaps.title", authority=authority_name),
        zones=[zone_view(zone, language) for zone in needs_map.zones],
    )
