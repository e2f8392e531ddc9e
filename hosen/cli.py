"""The ``hosen`` command line for municipal staff. Errors are one clear line and a non-zero exit.

Only the module of the command being run is imported: ``hosen --help`` and ``hosen --version``
import none of them (the help lines live in :data:`COMMANDS`), and a command starts without
loading the solver, the bots and the fakes it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from hosen.context import Context

Handler = Callable[["Context", argparse.Namespace], int]


class Command(NamedTuple):
    module: str  # under hosen.commands; its register() adds the command's parser
    summary: str  # the command's line in ``hosen --help``


COMMANDS: dict[str, Command] = {
    "db": Command("db", "database schema"),
    "people": Command("people", "list and show registered people"),
    "import": Command("registry_lists", "import a municipal list (CSV)"),
    "export": Command("registry_lists", "export the registry to CSV"),
    "town": Command("registry_lists", "the synthetic town for demos, tests and benchmarks"),
    "staff": Command("staff", "municipal staff: administrators, officers, coordinators"),
    "groups": Command(
        "groups", "communities: groups, their coordinators and members; who belongs to none"
    ),
    "resources": Command(
        "resources", "community resources: generators, vehicles, accessible shelters, water"
    ),
    "gaps": Command("gaps", "per zone: needs, answers (buddies, roles, groups, resources), gaps"),
    "assign": Command(
        "assign", "assign emergency roles and buddies; print coverage, changes and gaps"
    ),
    "campaign": Command("campaign", "start, watch and close check-ins and drills"),
    "help": Command("help_alerts", "open help alerts: who asked, how long ago, who has it"),
    "worker": Command(
        "worker", "send the outbox: campaign messages, bot replies, tasks (Ctrl-C stops it cleanly)"
    ),
    "inbox": Command(
        "inbox", "process stored inbound messages: dialog, campaign answers (Ctrl-C stops it)"
    ),
    "scheduler": Command(
        "scheduler", "run scheduled drills and the escalation sweeps (one active at a time)"
    ),
    "serve": Command(
        "serve", "run the Telegram bot, the SMS webhooks, the outbox worker and the scheduler"
    ),
    "voice": Command("voice", "phone calls: make the recorded prompts (espeak-ng) where missing"),
    "demo": Command(
        "demo",
        "a full simulated drill on the loopback fakes: town, assignment, check-in, escalation, report",
    ),
}
# The module of each command, as the tests and the benchmarks look it up.
COMMAND_MODULES: dict[str, str] = {name: command.module for name, command in COMMANDS.items()}


def hosen_version() -> str:
    try:
        return version("hosen")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command`` in full and every other command as its help line alone; with
    ``command`` None, every command in full."""
    parser = argparse.ArgumentParser(
        prog="hosen",
        description="Hosen: who can help and who needs help, and reaching all of them in a drill or emergency.",
    )
    parser.add_argument("--version", action="version", version=f"hosen {hosen_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = subparsers.add_parser

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # The help line of every command comes from COMMANDS, whoever adds its parser.
        summary = COMMANDS[name].summary
        return add_parser(name, **{"help": summary, "description": summary, **kwargs})

    subparsers.add_parser = add_command  # type: ignore[method-assign]
    if command is None:
        modules = set(COMMAND_MODULES.values())
    else:
        modules = {COMMAND_MODULES[command]} if command in COMMANDS else set()
    for name, (module, _) in COMMANDS.items():  # in this order in `hosen --help`
        if name in subparsers.choices:
            continue  # registered with another command of its module
        if module in modules:
            importlib.import_module(f"hosen.commands.{module}").register(subparsers)
        else:
            add_command(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), "")
    args = build_parser(command).parse_args(words)

    from sqlalchemy.exc import OperationalError, ProgrammingError

    from config.profile import ProfileError
    from config.settings import SettingsError
    from hosen.context import CommandError, build_context, database_problem
    from hosen.logs import configure_logging
    from registry.errors import RegistryError

    handler: Handler = args.handler
    ctx: Context | None = None
    # Every file a command creates (the SQLite database, exports, reports) is its owner's only.
    umask = os.umask(0o077)
    try:
        ctx = build_context(creates_database=getattr(args, "creates_database", False))
        configure_logging(ctx.settings, command=args.command)
        return handler(ctx, args)
    except (SettingsError, ProfileError, CommandError, RegistryError) as exc:
        print(f"hosen: error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        problem = database_problem(exc)
        if problem is None:
            raise
        print(f"hosen: error: database: {problem}", file=sys.stderr)
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
