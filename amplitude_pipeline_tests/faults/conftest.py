"""Fixtures of the fault-injection suite: the root conftest's (``new_dwh``, ``raw_event_store``) serve it."""
