"""Prompts as one resident wants to hear them (``anbu.domain.voice.VoiceProfile``).

A profile's variant of a catalogue prompt is made from the rendered prompt with sox, once per
profile and prompt, into ``<var_dir>/voice/<profile key>/<prompt>.wav``:

- slower: ``tempo -s`` (WSOLA time-stretch tuned for speech: the pitch, and so the voice, stay
  the same; a slower TTS render would change the voice's timing unevenly);
- louder: the rendered prompts already peak near the ceiling (-1 dBFS, about 18 dB above the
  speech), so a plain gain would clip. ``gain -l`` lifts the speech through sox's limiter and
  ``gain -n -1`` puts the peaks back at the ceiling: the speech level rises (about half the
  asked gain) and nothing clips.

The default profile plays the catalogue's files themselves.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from anbu.domain.replies import Prompt
from anbu.domain.voice import VoiceProfile
from ivr.prompts import PromptLibrary
from ivr.recording import RecordingStore
from ivr.tts import PEAK_CEILING_DBFS, run_sox

log = logging.getLogger(__name__)


def render_variant(src: Path, dst: Path, profile: VoiceProfile) -> None:
    """``src`` (8 kHz WAV) as ``profile`` wants it, into ``dst`` (blocking: sox)."""
    effects: list[str] = []
    if profile.tempo < 1.0:
        effects += ["tempo", "-s", f"{profile.tempo:.3f}"]
    if profile.gain_db > 0:
        effects += ["gain", "-l", f"{profile.gain_db:.2f}", "gain", "-n", f"{PEAK_CEILING_DBFS:g}"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_suffix(".partial.wav")
    try:
        run_sox(src, partial, *effects)
        partial.replace(dst)
    finally:
        partial.unlink(missing_ok=True)


class VoicedPrompts:
    """Paths (without extension) of the prompts a call plays: the visiting official's, the
    district's or the default recording when there is one (``ivr.recording``), else the TTS
    render; then the resident's profile variant of that, rendered on first use (in a
    thread)."""

    def __init__(
        self,
        library: PromptLibrary,
        variants_dir: Path,
        recordings: RecordingStore | None = None,
    ) -> None:
        self.library = library
        self.variants_dir = variants_dir
        self.recordings = recordings
        self._locks: dict[Path, asyncio.Lock] = {}

    async def path(
        self,
        prompt: Prompt,
        profile: VoiceProfile,
        district_code: str | None = None,
        official_id: str | None = None,
    ) -> str:
        recorded = (
            await asyncio.to_thread(self.recordings.path, prompt, district_code, official_id)
            if self.recordings is not None
            else None
        )
        base = str(recorded.with_suffix("")) if recorded is not None else self.library.path(prompt)
        if not profile.changes_audio:
            return base
        source = recorded.parent.name if recorded is not None else "tts"
        dst = self.variants_dir / profile.key / source / f"{prompt.value}.wav"
        async with self._locks.setdefault(dst, asyncio.Lock()):
            # A recording replaced since the variant was made: render it again.
            stale = await asyncio.to_thread(_stale, dst, Path(base + ".wav"))
            if stale:
                await asyncio.to_thread(render_variant, Path(base + ".wav"), dst, profile)
        return str(dst.with_suffix(""))


def _stale(variant: Path, base: Path) -> bool:
    try:
        return variant.stat().st_mtime_ns < base.stat().st_mtime_ns
    except FileNotFoundError:
        return True


__all__ = ["VoicedPrompts", "render_variant"]
