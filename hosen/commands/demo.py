"""``hosen demo``: rehearse a whole drill on this machine, with no account and no network."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from config.languages import Language
from hosen.context import Context
from hosen.demo import DemoOptions, run_demo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo")
    demo.add_argument(
        "--size", type=int, default=2000, help="people in the synthetic town (default 2000)"
    )
    demo.add_argument(
        "--seed", type=int, default=7, help="seed of the town and of the people's answers"
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=120.0,
        help="how many times faster than real time the drill runs",
    )
    demo.add_argument(
        "--database", type=Path, default=Path("var/demo.sqlite3"), help="SQLite file (recreated)"
    )
    demo.add_argument(
        "--html",
        type=Path,
        default=Path("var/demo-drill-report.html"),
        help="where the report goes",
    )
    demo.add_argument(
        "--keep-console",
        action="store_true",
        help="keep serving the officers' console after the drill, until Ctrl-C",
    )
    demo.add_argument(
        "--lang",
        choices=tuple(language.value for language in Language),
        default=Language.EN.value,
        help="the report's language (default: English, as the demo's narration)",
    )
    demo.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    if not 50 <= args.size <= 100_000:
        from hosen.context import CommandError

        raise CommandError("--size must be between 50 and 100000")
    options = DemoOptions(
        size=args.size,
        seed=args.seed,
        speed=args.speed,
        database=args.database,
        html=args.html,
        keep_console=args.keep_console,
        language=Language(args.lang),
    )
    return asyncio.run(run_demo(ctx.settings, options))
