"""Logging for Hosen's long-running commands (``serve``, ``worker``, ``inbox``, ``scheduler``):
a line for what an operator needs to know, not a line per request.

twilio's clients log every request and answer at INFO, ten lines per SMS (URL and headers): at a
few thousand SMS a second that is tens of thousands of lines, and writing them would cost the
worker most of its time. APScheduler announces every run of every job.
"""

from __future__ import annotations

import logging

# Loggers that speak at INFO for every request or job run; their warnings still come through.
PER_REQUEST_LOGGERS = ("twilio.http_client", "twilio.async_http_client", "apscheduler")


def configure_logging() -> None:
    """INFO to standard error, with the per-request loggers raised to WARNING."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
