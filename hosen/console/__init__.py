"""The officers' web console, served under ``/console`` by the same ASGI app as the webhooks:
sign-in by a one-time code, the live board, the help queue, the lists to act on, and starting
or closing a check-in. Templates and static files live beside this module."""

from hosen.console.views import console_routes

__all__ = ["console_routes"]
