"""Stand-in recordings of the voice prompts, synthesised offline with espeak-ng.

A language the profile plays from recordings (Amharic: Twilio has no Amharic voice) needs one
WAV file per prompt (:data:`dispatch.channels.voice.PROMPTS`), recorded by a volunteer. Until
they are, and for the demo and the tests, :func:`synthesise_prompts` writes them with espeak-ng
from the message catalogs' words, leaving any file that already exists (a real recording) alone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from config.languages import Language
from config.profile import VoiceProfile
from dispatch.channels.voice import PROMPTS, prompt_text

ESPEAK = "espeak-ng"


class PromptsError(Exception):
    """espeak-ng is missing or failed; ``str()`` says which."""


def synthesise_prompts(
    profile: VoiceProfile, *, overwrite: bool = False, espeak: str | None = None
) -> list[Path]:
    """Write every missing recorded prompt of every recorded language; returns the files written."""
    program = espeak or shutil.which(ESPEAK)
    if program is None:
        raise PromptsError("espeak-ng not found (Debian: apt-get install espeak-ng)")
    written: list[Path] = []
    for language, spoken in profile.languages.items():
        if spoken.recordings is None:
            continue
        folder = Path(profile.prompts_dir) / spoken.recordings
        folder.mkdir(parents=True, exist_ok=True)
        for prompt in PROMPTS:
            path = folder / f"{prompt}.wav"
            if path.exists() and not overwrite:
                continue
            text = prompt_text(Language(language), prompt)
            done = subprocess.run(
                [program, "-v", Language(language).value, "-w", str(path), text],
                capture_output=True,
                check=False,
                timeout=60,
            )
            if done.returncode != 0:
                raise PromptsError(f"espeak-ng failed for {path.name}: exit {done.returncode}")
            written.append(path)
    return written
