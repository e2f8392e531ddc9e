"""``hosen voice prompts``: the recorded prompts a call plays, made with espeak-ng where missing.

A language the profile plays from recordings (``[voice.languages]``, ``recordings = "am"``)
needs one WAV file per prompt in ``<prompts_dir>/<recordings>/``. A volunteer's recordings go
there under the same names; this command fills in the ones that are missing with espeak-ng's
voice (``--overwrite`` replaces them all) and lists what each prompt says.
"""

from __future__ import annotations

import argparse

from hosen.context import CommandError, Context


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    voice = subparsers.add_parser("voice")
    actions = voice.add_subparsers(dest="action", required=True)
    prompts = actions.add_parser("prompts", help="make the missing recorded prompts (espeak-ng)")
    prompts.add_argument("--overwrite", action="store_true", help="replace existing recordings")
    prompts.set_defaults(handler=run_prompts)


def run_prompts(ctx: Context, args: argparse.Namespace) -> int:
    from config.languages import Language
    from dispatch.channels.voice import PROMPTS, prompt_text
    from hosen.prompts import PromptsError, synthesise_prompts

    voice = ctx.profile.voice
    if voice is None:
        raise CommandError("the profile has no [voice] table: no language is recorded")
    try:
        written = synthesise_prompts(voice, overwrite=args.overwrite)
    except PromptsError as exc:
        raise CommandError(str(exc)) from None
    for language, spoken in voice.languages.items():
        if spoken.recordings is None:
            continue
        print(f"{language}: {voice.prompts_dir}/{spoken.recordings}/")
        for prompt in PROMPTS:
            print(f"  {prompt}.wav  {prompt_text(Language(language), prompt)}")
    print(f"{len(written)} files written")
    return 0
