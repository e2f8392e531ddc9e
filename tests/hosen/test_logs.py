"""The one logging configuration: secrets are masked in every line, tracebacks included."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from config.settings import Settings
from hosen.logs import MASK, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_a_token_in_an_exception_is_masked_in_the_log(
    unit_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    token = f"7012345678:{secrets.token_urlsafe(26)[:35]}"
    password = secrets.token_urlsafe(16)
    configure_logging(
        unit_settings.model_copy(
            update={
                "telegram_token": SecretStr(token),
                "database_url": f"postgresql://hosen:{password}@db.example/hosen",
            }
        ),
        command="worker",
    )
    logging.getLogger("hosen.test").warning("cannot reach postgresql://hosen:%s@db", password)
    try:
        raise ValueError(f"The token `{token}` was rejected by the server.")
    except ValueError:
        logging.getLogger("hosen.test").exception("start failed for %s", token)
    logging.getLogger("httpx").info("GET https://api.telegram.org/bot%s/getMe", token)
    err = capsys.readouterr().err
    assert token not in err and password not in err
    assert err.count(MASK) == 3 and "rejected by the server" in err  # httpx stays quiet
