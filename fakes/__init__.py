"""Loopback fakes of the Telegram Bot API and Twilio Messages API, checked against the official specs."""
