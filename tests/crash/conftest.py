"""Crash tests use the integration fixtures (real workers, Redis, PostgreSQL), defined
once in ``tests/conftest.py`` so that the session's database is one for every test."""
