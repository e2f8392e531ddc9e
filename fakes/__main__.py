"""Run the Telegram and Twilio fakes until interrupted: ``python -m fakes [options]``.

Prints one JSON line with the URLs and credentials (the ``HOSEN_*`` settings to use), then
serves. Used by :func:`fakes.remote.spawn_fakes`, the benchmarks and the demo.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from fakes.faults import Faults, RateLimits
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes", description=__doc__)
    parser.add_argument("--telegram-port", type=int, default=0)
    parser.add_argument("--twilio-port", type=int, default=0)
    parser.add_argument("--token", help="the bot token to accept (default: a random one)")
    parser.add_argument("--account-sid")
    parser.add_argument("--auth-token")
    parser.add_argument("--phone-number", default="+972559000001")
    parser.add_argument(
        "--no-history", action="store_true", help="keep no record of messages (benchmarks)"
    )
    parser.add_argument(
        "--telegram-limits", action="store_true", help="enforce 30/s per bot, 1/s per chat"
    )
    parser.add_argument("--twilio-mps", type=float, help="enforce this many SMS a second")
    parser.add_argument("--auto-status", default="", help="e.g. sent,delivered")
    parser.add_argument(
        "--faults",
        default="{}",
        help='fields of fakes.faults.Faults as JSON, e.g. \'{"seed": 1, "server_error_rate": 0.1}\'',
    )
    args = parser.parse_args(argv)
    faults = json.loads(args.faults)
    if faults.get("methods") is not None:
        faults["methods"] = frozenset(faults["methods"])

    telegram = FakeTelegram(
        token=args.token, keep_history=not args.no_history, port=args.telegram_port
    )
    twilio = FakeTwilio(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        phone_number=args.phone_number,
        keep_history=not args.no_history,
        auto_status=[s for s in args.auto_status.split(",") if s],
        port=args.twilio_port,
    )
    telegram.faults = Faults(**faults)
    twilio.faults = Faults(**faults)
    if args.telegram_limits:
        telegram.limits = RateLimits.telegram()
    if args.twilio_mps:
        twilio.limits = RateLimits.twilio(args.twilio_mps)
    telegram.start()
    twilio.start()
    info = {
        "telegram_url": telegram.url,
        "telegram_token": telegram.token,
        "twilio_url": twilio.url,
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_phone_number": twilio.phone_number,
    }
    print(json.dumps(info), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    telegram.stop()
    twilio.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
