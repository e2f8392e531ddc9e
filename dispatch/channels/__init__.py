"""One module per channel: :mod:`~dispatch.channels.telegram`, :mod:`~dispatch.channels.sms`
and :mod:`~dispatch.channels.voice`, each with its provider's protocol both ways: what arrives
decoded and its signature or secret checked, sending, the provider's errors classified, and the
rendering of choices (buttons, numbered SMS lines, keys to press). :mod:`~dispatch.channels.base`
is what they share with the worker and with ``bots/``: the outbox row and the send results, the
neutral inbound values and the neutral prompt."""
