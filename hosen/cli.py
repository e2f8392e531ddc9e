"""The ``hosen`` command line for municipal staff. Errors are one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from config.profile import ProfileError
from config.settings import SettingsError
from hosen.commands import (
    assign,
    campaign,
    db,
    demo,
    people,
    registry_lists,
    scheduler,
    serve,
    staff,
    worker,
)
from hosen.context import CommandError, Context, build_context
from registry.errors import RegistryError

Handler = Callable[[Context, argparse.Namespace], int]
COMMAND_GROUPS = (
    db,
    people,
    registry_lists,
    staff,
    assign,
    campaign,
    worker,
    scheduler,
    serve,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hosen",
        description="Hosen: who can help and who needs help, and reaching all of them in a drill or emergency.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    ctx: Context | None = None
    try:
        ctx = build_context()
        return handler(ctx, args)
    except (SettingsError, ProfileError, CommandError, RegistryError) as exc:
        print(f"hosen: error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        print(f"hosen: error: database: {reason} (check HOSEN_DATABASE_URL)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if ctx is not None:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
