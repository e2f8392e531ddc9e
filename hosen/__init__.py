"""The wiring layer: the ``hosen`` command line and the ASGI application that mounts the webhooks."""
