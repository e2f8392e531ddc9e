# The Hosen image, built once (`docker compose build`) and run by every Hosen service of
# docker-compose.yml: migrate, web, inbox, worker, scheduler. It holds the installed wheel and
# its dependencies, nothing of the checkout.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY config ./config
COPY registry ./registry
COPY dispatch ./dispatch
COPY bots ./bots
COPY hosen ./hosen
COPY fakes ./fakes
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The console's PDF call-down sheet (WeasyPrint): Pango, and fonts with Hebrew, Arabic, Ethiopic
# and Cyrillic glyphs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-core \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
# A fixed uid, so that secrets and volumes can be given to it on the host.
RUN pip install --no-cache-dir --no-index --find-links /wheels hosen && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/hosen --create-home hosen \
    && mkdir -p /var/lib/hosen/spool && chown -R hosen /var/lib/hosen
USER hosen
WORKDIR /var/lib/hosen
EXPOSE 8000
CMD ["hosen", "serve", "--host", "0.0.0.0", "--port", "8000"]
