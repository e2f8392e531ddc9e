"""``hosen db upgrade``: bring the database schema up to date and load the profile's places."""

from __future__ import annotations

import argparse

from hosen import migrations
from hosen.context import Context
from registry.db import unit_of_work
from registry.profile_sync import sync_profile


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser("db")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser(
        "upgrade", help="apply migrations and load the profile's authorities, zones, shelters"
    )
    up.set_defaults(handler=upgrade, creates_database=True)


def upgrade(ctx: Context, args: argparse.Namespace) -> int:
    migrations.upgrade(ctx.engine)
    with unit_of_work(ctx.sessions) as session:
        directory = sync_profile(session, ctx.profile)
    print(
        f"database is up to date; profile {ctx.profile.name!r}: "
        f"{len(directory.authorities)} authorities, {len(directory.zones)} zones, "
        f"{len(directory.shelters)} shelters"
    )
    return 0
