"""The dispatcher: campaigns, the outbox and its workers, responses, escalation and reports."""
