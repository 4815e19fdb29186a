"""Accessibility per resident: how their call sounds. Pure.

Hearing loss is common among the people we call: a resident's voice profile makes the
prompts louder (a gain through a limiter: the peaks stay at the clipping ceiling), slower
(a time-stretch that keeps the pitch, so the voice stays natural), and asks the question once
more before giving up.
Key 9 or saying "다시" repeats the question for anyone (``anbu.domain.replies``).
"""

from __future__ import annotations

from dataclasses import dataclass

from anbu.errors import ValidationError

MAX_GAIN_DB = 12.0
MIN_TEMPO = 0.6  # 60% of the normal speed: slower than that, words fall apart
MAX_EXTRA_REPEATS = 2


@dataclass(frozen=True, slots=True)
class VoiceProfile:
    """``gain_db``: louder by this much (0-12 dB); ``tempo``: speed factor (0.6-1.0, 1 =
    as rendered); ``extra_repeats``: more asks of the question before "no response"."""

    gain_db: float = 0.0
    tempo: float = 1.0
    extra_repeats: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gain_db <= MAX_GAIN_DB:
            raise ValidationError(f"gain_db must be 0 to {MAX_GAIN_DB:g} dB")
        if not MIN_TEMPO <= self.tempo <= 1.0:
            raise ValidationError(f"tempo must be {MIN_TEMPO:g} to 1.0")
        if not 0 <= self.extra_repeats <= MAX_EXTRA_REPEATS:
            raise ValidationError(f"extra_repeats must be 0 to {MAX_EXTRA_REPEATS}")

    @property
    def changes_audio(self) -> bool:
        return self.gain_db > 0 or self.tempo < 1.0

    @property
    def key(self) -> str:
        """A directory name for this profile's rendered variants."""
        return f"g{self.gain_db:.1f}-t{self.tempo:.2f}"


DEFAULT_VOICE = VoiceProfile()


__all__ = ["DEFAULT_VOICE", "MAX_EXTRA_REPEATS", "MAX_GAIN_DB", "MIN_TEMPO", "VoiceProfile"]
