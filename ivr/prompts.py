"""Where prompt audio lives: ``<audio_dir>/rendered/<prompt id>.wav`` (8 kHz mono 16-bit).

Asterisk plays a file by its absolute path without extension and picks the format itself, so
:meth:`PromptLibrary.path` returns exactly that. Rendering (TTS -> sox) is another module's job.
"""

from __future__ import annotations

from pathlib import Path

from anbu.domain.replies import Prompt

# Formats Asterisk can play with the modules we load (format_wav, format_pcm, format_sln,
# format_gsm); any one of them makes a prompt playable.
PLAYABLE_EXTENSIONS = (".wav", ".sln", ".ulaw", ".alaw", ".gsm")


class PromptLibrary:
    def __init__(self, audio_dir: Path) -> None:
        # absolute() touches no disk (unlike resolve()): safe to build inside the event loop.
        self.rendered_dir = Path(audio_dir).absolute() / "rendered"

    def path(self, prompt: Prompt) -> str:
        """Absolute path without extension, as Asterisk's STREAM FILE / GET DATA want it."""
        return str(self.rendered_dir / prompt.value)

    def exists(self, prompt: Prompt) -> bool:
        """Whether a playable file is there (blocking stat: call at start-up or in a thread)."""
        base = self.rendered_dir / prompt.value
        return any(base.with_suffix(ext).is_file() for ext in PLAYABLE_EXTENSIONS)

    def missing(self) -> list[Prompt]:
        """Prompts with no playable file (blocking: call at start-up or in a thread)."""
        return [prompt for prompt in Prompt if not self.exists(prompt)]
