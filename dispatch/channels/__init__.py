"""One module per outbound channel: :mod:`~dispatch.channels.telegram`,
:mod:`~dispatch.channels.sms` and :mod:`~dispatch.channels.voice`, each with its sending, its
provider's errors classified and its rendering of a message's choices (buttons, numbered SMS
lines, keys to press); :mod:`~dispatch.channels.base` is what they share with the worker."""
