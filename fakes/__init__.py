"""Loopback fakes of the Telegram Bot API and Twilio Messages API, checked against the official specs.

- ``fakes.telegram.FakeTelegram`` and ``fakes.twilio.FakeTwilio``: the servers, with update
  and webhook builders; ``fakes.telegram_spec``: the Bot API checker.
- ``fakes.faults``: seeded fault injection, rate limits and traffic counters.
- ``fakes.people``: simulated residents who answer check-ins.
- ``fakes.town``: the deterministic synthetic town (people, groups, municipal lists) that the
  demo, the benchmarks and the tests load; ``fakes.town_names``: its names and streets.
- ``fakes.remote`` and ``python -m fakes``: the fakes in a process of their own.
- ``fakes.settings.settings_for_fakes`` and ``fakes.leaks.assert_no_secret_in``: wiring and the
  secret-in-logs guard for tests. Specs and their licence: ``fakes/specs/README.md``.
"""
