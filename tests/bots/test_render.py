"""Rendering prompts, and the segment budget of every SMS the bot can send (≤ 3 segments)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import REGISTRATION, Dialog, Inbound, Step, Turn
from bots.models import Conversation
from config.i18n import catalog, t
from config.languages import ALL_LANGUAGES, Language
from dispatch.channels import sms, telegram
from dispatch.channels.base import Choice, Prompt, Request
from dispatch.segments import count_segments as segments
from registry.models import Channel

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SMS_STEPS = [s for s in REGISTRATION if s != Step.PHONE] + [
    Step.MENU,
    Step.UPDATE,
    Step.DELETE,
    Step.HELP_KIND,
    Step.HELP_DETAIL,
]
# Whole messages that are sent on their own (not prompts with choices).
STANDALONE = [
    key
    for key in catalog(Language.EN)
    if key.startswith(("bot.error.", "bot.stopped.", "bot.group.", "bot.status.", "bot.summary.d"))
    or key
    in (
        "bot.help.sms",
        "bot.cancelled",
        "bot.welcome.back",
        "bot.language.changed",
        "bot.consent.declined",
        "bot.health.declined",
        "bot.guardian.declined",
        "bot.menu.paused",
        "bot.delete.done",
        "bot.summary.updated",
        "phone.invalid",
        "phone.landline",
    )
]
TYPICAL = {
    "max": 60,
    "age": 14,
    "count": 12,
    "group": "Bnei Akiva Kiryat Tamar",
    "role": "Shelter manager",
    "name": "Miriam Ben-David Abukasis",
    "who": "Both",
    "zone": "Palm Hill",
}


def _draft(language: Language, who: str) -> dict[str, object]:
    return {
        "language": language.value,
        "who": who,
        "name": "Miriam Ben-David Abukasis",  # a long real-life name
        "authority": "kiryat-tamar",
        "zone": "kt-dekalim",
        "birth_year": 1946,
        "skills": ["first_aid", "elderly_care", "social_work"],
        "needs": ["mobility", "lives_alone"],
        "ec_name": "Ruth",
    }


def _sms_texts(
    memory_sessions: sessionmaker[Session], dialog: Dialog, language: Language
) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    with memory_sessions() as session:
        for step in SMS_STEPS:
            who = "both" if step != Step.GUARDIAN else "volunteer"
            draft = _draft(language, who)
            if step == Step.GUARDIAN:
                draft["birth_year"] = 2011
            conversation = Conversation(
                channel=Channel.SMS,
                address="+972525551234",
                step=step.value,
                draft=draft,
                language=language,
            )
            inbound = Inbound(channel=Channel.SMS, address="+972525551234")
            turn = Turn(session, conversation, inbound, NOW, None)
            prompt = dialog.prompt(turn, step)
            texts[step.value] = [m.text for m in sms.render_prompt(prompt, language)]
        texts["language(first)"] = [
            m.text
            for m in sms.render_prompt(
                dialog.prompt(
                    Turn(
                        session,
                        Conversation(channel=Channel.SMS, address="x", step="", draft={}),
                        Inbound(channel=Channel.SMS, address="x"),
                        NOW,
                        None,
                    ),
                    Step.LANGUAGE,
                ),
                language,
            )
        ]
    for key in STANDALONE:
        texts[key.removeprefix("bot.")] = [t(language, key, **TYPICAL)]
    # The status a registered person gets: its longest combination of lines, as one SMS.
    lines = ["registered", "state_paused", "role_proposed", "checks_on", "no_buddy"]
    params = {**TYPICAL, "who": t(language, "bot.who.both")}
    texts["status (whole)"] = ["\n".join(t(language, f"bot.status.{k}", **params) for k in lines)]
    return texts


def test_every_sms_fits_in_three_segments(
    memory_sessions: sessionmaker[Session], dialog: Dialog
) -> None:
    table = {language: _sms_texts(memory_sessions, dialog, language) for language in ALL_LANGUAGES}
    names = list(table[Language.EN])
    print("\nSMS segments per prompt (messages joined by +)")
    print(f"{'prompt':28}" + "".join(f"{lang.value:>9}" for lang in ALL_LANGUAGES))
    too_long = []
    for name in names:
        cells = []
        for language in ALL_LANGUAGES:
            counts = [segments(text) for text in table[language][name]]
            cells.append("+".join(str(c) for c in counts))
            too_long += [(name, language.value, c) for c in counts if c > sms.MAX_SMS_SEGMENTS]
        print(f"{name:28}" + "".join(f"{cell:>9}" for cell in cells))
    assert too_long == []


def test_segment_counter_knows_gsm_and_ucs2() -> None:
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2
    assert segments("€" * 80) == 1 and segments("€" * 81) == 2
    assert segments("ש" * 70) == 1 and segments("ש" * 71) == 2 and segments("ש" * 201) == 3
    assert segments("🙂" * 35) == 1 and segments("🙂" * 36) == 2


def test_telegram_buttons_carry_the_step_and_navigation() -> None:
    prompt = Prompt(
        text="Q",
        step="who",
        choices=(Choice("volunteer", "A volunteer who can help"), Choice("both", "Both")),
        navigation=True,
    )
    rendered = telegram.render_prompt(prompt, Language.EN)
    data = [button[1] for row in rendered.buttons or [] for button in row]
    assert data == ["b:who:volunteer", "b:who:both", "b:who:_back", "b:who:_cancel"]
    assert all(len(d.encode()) <= 64 for d in data)


def test_telegram_contact_and_location_use_reply_keyboard_buttons() -> None:
    prompt = Prompt(text="Q", step="phone", requests=(Request.CONTACT,))
    rendered = telegram.render_prompt(prompt, Language.HE)
    assert rendered.buttons == [[(t(Language.HE, "bot.telegram.share_contact"), "kb:contact")]]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_sms_choices_are_numbered(language: Language) -> None:
    prompt = Prompt(text="Q", step="x", choices=(Choice("a", "Alpha"), Choice("b", "Beta")))
    assert sms.render_prompt(prompt, language)[0].text == "Q\n1 Alpha\n2 Beta"
