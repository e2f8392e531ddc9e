# The Hosen service image: `hosen serve` (webhooks, bot, one worker, scheduler) or `hosen worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY config ./config
COPY registry ./registry
COPY dispatch ./dispatch
COPY bots ./bots
COPY hosen ./hosen
COPY fakes ./fakes
RUN pip install --no-cache-dir -e . \
    && useradd --system --home /app hosen && mkdir -p /app/var && chown hosen /app/var
USER hosen
EXPOSE 8000
CMD ["hosen", "serve", "--host", "0.0.0.0", "--port", "8000"]
