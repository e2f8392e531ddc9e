"""The registry: people, their needs and skills, groups, consent, roles, and the audit trail."""
