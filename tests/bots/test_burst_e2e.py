"""A burst of check-in replies against the all-in-one server (webhooks, inbox processor and
outbox worker in one process, as ``hosen serve`` runs them), with the real clients: every reply
acknowledged is stored once and answered, forged posts mixed into the burst are refused and
store nothing, and the acknowledgements to the residents go out without a poll's wait."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import uvicorn
from sqlalchemy import func, select, update

from config.settings import Settings
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import CampaignRecipient, InboundMessage, OutboxMessage, OutboxStatus
from fakes.telegram import FakeTelegram
from fakes.town import insert_reachable_residents
from fakes.twilio import FakeTwilio
from hosen.app import build_app
from hosen.context import build_context
from registry.db import utcnow
from registry.models import Authority
from tests.bots.test_e2e import _free_port, service_settings

pytestmark = pytest.mark.e2e

PEOPLE = 120  # half on Telegram, half by SMS
FORGED = 20
CHAT_BASE = 7_000_000


def test_a_burst_of_replies_is_stored_once_answered_and_forgeries_refused(
    settings: Settings,
    authority: Authority,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=fake_twilio, port=port)
    ctx = build_context(config)
    now = utcnow()
    with ctx.sessions() as session:
        insert_reachable_residents(
            session,
            authority_id=authority.id,
            count=PEOPLE,
            on_telegram=lambda n: n % 2 == 0,
            chat_base=CHAT_BASE,
            now=now,
        )
        campaign = start_drill_checkin(
            session,
            authority=session.merge(authority),
            audience=Audience(),
            started_by="t",
            now=now - timedelta(minutes=1),
        )
        # The check-in went out before the replies come in.
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.campaign_id == campaign.id)
            .values(status=OutboxStatus.SENT, sent_at=now, attempts=1)
        )
        session.commit()
        campaign_id = campaign.id
    app = build_app(ctx)  # everything in this process, as `hosen serve`

    async def scenario() -> tuple[list[int], list[int]]:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                assert not serving.done()
                await asyncio.sleep(0.01)
            await asyncio.wait_for(app.state.runtime.telegram_ready.wait(), timeout=20)
            sms_url = f"http://127.0.0.1:{port}/sms/inbound"
            hook = f"http://127.0.0.1:{port}/telegram/webhook"
            genuine = []
            for n in range(PEOPLE):
                if n % 2 == 0:
                    user = fake_telegram.new_user("R", user_id=CHAT_BASE + n)
                    genuine.append(fake_telegram.deliver_async(fake_telegram.text(user, "1")))
                else:
                    genuine.append(
                        fake_twilio.send_inbound_async(sms_url, from_=f"+97250{n:07d}", body="1")
                    )
            forged = []
            for n in range(FORGED):
                if n % 2 == 0:
                    user = fake_telegram.new_user("Eve", user_id=CHAT_BASE + n)
                    update = fake_telegram.text(user, "1")
                    forged.append(fake_telegram.post_webhook_async(hook, update, secret_token="x"))
                else:
                    forged.append(
                        fake_twilio.send_inbound_async(
                            sms_url, from_=f"+97250{n:07d}", body="1", signing="forged"
                        )
                    )
            answers = await asyncio.gather(*genuine, *forged)
            statuses = [int(a or 0) for a in answers]
            # Processing and the acknowledgements to the residents follow the webhooks' answers.
            for _ in range(3000):
                if await asyncio.to_thread(_all_done, ctx, campaign_id):
                    break
                await asyncio.sleep(0.01)
            return statuses[:PEOPLE], statuses[PEOPLE:]
        finally:
            server.should_exit = True
            await serving

    try:
        accepted, refused = asyncio.run(scenario())
        assert accepted == [200] * PEOPLE
        assert refused == [403] * FORGED
        with ctx.sessions() as session:
            stored = session.scalar(select(func.count()).select_from(InboundMessage))
            assert stored == PEOPLE  # each reply once, nothing of the forgeries
            answered = session.scalar(
                select(func.count())
                .select_from(CampaignRecipient)
                .where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.answer.is_not(None),
                )
            )
            assert answered == PEOPLE
        assert _all_done(ctx, campaign_id)
        acknowledged = {c["chat_id"] for c in fake_telegram.calls("sendMessage")} | {
            m["to"] for m in fake_twilio.sent
        }
        assert len(acknowledged) == PEOPLE
    finally:
        ctx.engine.dispose()


def _all_done(ctx: object, campaign_id: int) -> bool:
    """Every reply processed and nothing left in the outbox to send."""
    sessions = ctx.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        waiting = session.scalar(
            select(func.count())
            .select_from(InboundMessage)
            .where(InboundMessage.processed_at.is_(None))
        )
        unsent = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING]))
        )
        return waiting == 0 and unsent == 0 and campaign_id > 0
