"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orchestrator.store.db import Store

PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on SQLite, and on a throwaway database of the machine's real PostgreSQL."""
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'store.db'}")
        return
    name = f"orch_test_{os.getpid()}_{time.time_ns() % 10**9}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    opened = Store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    try:
        yield opened
    finally:
        opened.engine.dispose()
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
