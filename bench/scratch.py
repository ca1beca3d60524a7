"""Throw-away PostgreSQL databases for the benches: created under a random name, dropped after."""

from __future__ import annotations

import uuid


def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """Create an empty database beside the admin URL's; its name and URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
