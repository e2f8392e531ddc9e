"""The ``hosen`` command line for municipal staff. Errors are one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from config.profile import ProfileError
from config.settings import SettingsError
from hosen.context import CommandError, Context, build_context
from hosen.logs import configure_logging
from registry.errors import RegistryError

Handler = Callable[[Context, argparse.Namespace], int]
# The module under hosen.commands that registers each command. Only the module of the command
# being run is imported (all of them for `hosen --help`): a command starts without loading the
# solver, the bots and the fakes it does not use.
COMMAND_MODULES: dict[str, str] = {
    "db": "db",
    "people": "people",
    "import": "registry_lists",
    "export": "registry_lists",
    "town": "registry_lists",
    "staff": "staff",
    "assign": "assign",
    "campaign": "campaign",
    "help": "help_alerts",
    "worker": "worker",
    "inbox": "inbox",
    "scheduler": "scheduler",
    "serve": "serve",
    "demo": "demo",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone, or for every command when it is None or unknown."""
    parser = argparse.ArgumentParser(
        prog="hosen",
        description="Hosen: who can help and who needs help, and reaching all of them in a drill or emergency.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    else:
        modules = list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in modules:
        importlib.import_module(f"hosen.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(command).parse_args(words)
    handler: Handler = args.handler
    ctx: Context | None = None
    # Every file a command creates (the SQLite database, exports, reports) is its owner's only.
    umask = os.umask(0o077)
    try:
        ctx = build_context()
        configure_logging(ctx.settings, command=args.command)
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
    except Exception as exc:  # one line here; the traceback to the log, secrets masked
        logging.getLogger("hosen").exception("%s failed", args.command)
        print(f"hosen: error: {args.command} failed ({type(exc).__name__})", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)
        if ctx is not None:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
