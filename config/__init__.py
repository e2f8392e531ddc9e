"""Configuration: operator settings (``HOSEN_*``), the municipality profile and the message catalogs."""
