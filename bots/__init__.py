"""Inbound chat: one conversation engine rendered for Telegram and SMS."""
