"""Alembic migrations; the app and the tests migrate, never ``create_all()``."""
