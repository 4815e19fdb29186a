"""Recorded prompts: a district's voice talent (or an official) instead of the TTS voice.

``ingest`` takes any file sox reads and makes the prompt Asterisk plays, or refuses it with a
reason (:class:`RecordingRefusedError`, ``reason`` one of :class:`Refusal`):

1. sox converts it to 8 kHz mono 16-bit (a file sox cannot read is ``not_audio``);
2. clipping is checked on that conversion, before any gain (runs of samples at full scale:
   a clipped recording distorts, and no gain can repair it) -> ``clipped``;
3. silence is trimmed at both ends (a recording starts and ends with room noise);
   nothing left, or no speech above the floor -> ``silent``; longer than ``max_s`` ->
   ``too_long``;
4. the loudness is measured (ITU-R BS.1770 integrated loudness: K-weighting, 400 ms blocks,
   absolute and relative gates) and brought to ``TARGET_LUFS``; when that would push the peaks
   past the ceiling, sox's limiter takes them and the loudness is measured again and corrected,
   so every source ends within ``LOUDNESS_TOLERANCE_LU`` of the target, whatever its level;
5. the lead-in and tail of the TTS prompts are added (RTP starts, the ear settles).

The store (:class:`RecordingStore`) keeps them under
``<var_dir>/recordings/<scope>/<prompt>.wav`` (scope ``default``, ``district-<code>`` or
``official-<id>``: an official's own greeting) with a manifest that says, per prompt and
scope, which source plays: the recording or the TTS fallback.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anbu.domain.replies import Prompt
from anbu.errors import AnbuError
from ivr.tts import PEAK_CEILING_DBFS, SAMPLE_RATE, read_samples, run_sox

TARGET_LUFS = -20.0
LOUDNESS_TOLERANCE_LU = 1.0
DEFAULT_MAX_S = 30.0
SILENCE_FLOOR_DB = -55.0  # below this (dBFS, 20 ms frames, as recorded) is not a voice
MIN_SPEECH_S = 0.3
CLIP_LEVEL = 32700  # |sample| at or above: at full scale
CLIP_RUN = 3  # consecutive full-scale samples: a clipped peak, not a loud one
CLIPPED_SHARE = 0.0005  # more than this share of samples in such runs: refused
LEAD_IN_S, TAIL_S = 0.3, 0.2


class Refusal(enum.StrEnum):
    NOT_AUDIO = "not_audio"
    CLIPPED = "clipped"
    SILENT = "silent"
    TOO_LONG = "too_long"


class RecordingRefusedError(AnbuError):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---- loudness (ITU-R BS.1770-4) ----------------------------------------------------------------


def _biquad(x: np.ndarray, b: tuple[float, float, float], a: tuple[float, float]) -> np.ndarray:
    # Direct form I; a Python loop over 8 kHz audio of at most a minute is ~0.2 s (a thread).
    y = np.empty_like(x)
    x1 = x2 = y1 = y2 = 0.0
    b0, b1, b2 = b
    a1, a2 = a
    for i, xi in enumerate(x.tolist()):
        yi = b0 * xi + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        x2, x1, y2, y1 = x1, xi, y1, yi
        y[i] = yi
    return y


def _k_weighting(rate: int) -> list[tuple[tuple[float, float, float], tuple[float, float]]]:
    """The two K-weighting stages for any sample rate (the 48 kHz coefficients of the
    standard, re-derived by the bilinear transform as pyloudnorm does)."""
    stages = []
    # Stage 1: high shelf, +4 dB above ~1.5 kHz (the head's acoustic effect).
    g, q, fc = 3.99984385397, 0.7071752369554193, 1681.9744509555319
    k = math.tan(math.pi * fc / rate)
    vh = 10 ** (g / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    stages.append(
        (
            ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0),
            (2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0),
        )
    )
    # Stage 2: high pass at ~38 Hz (RLB weighting).
    q, fc = 0.5003270373253953, 38.13547087613982
    k = math.tan(math.pi * fc / rate)
    a0 = 1 + k / q + k * k
    stages.append(((1.0, -2.0, 1.0), (2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)))
    return stages


def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    """LUFS of mono float samples in [-1, 1]; -inf for silence."""
    x = samples.astype(np.float64)
    for b, a in _k_weighting(rate):
        x = _biquad(x, b, a)
    block, step = int(0.4 * rate), int(0.1 * rate)
    if len(x) < block:
        x = np.pad(x, (0, block - len(x)))
    starts = range(0, len(x) - block + 1, step)
    z = np.array([np.mean(x[s : s + block] ** 2) for s in starts])
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(z)
    gated = z[lk > -70.0]
    if gated.size == 0:
        return -math.inf
    relative = -0.691 + 10 * math.log10(float(np.mean(gated))) - 10.0
    gated = z[(lk > -70.0) & (lk > relative)]
    return -0.691 + 10 * math.log10(float(np.mean(gated)))


def loudness_of(path: Path) -> float:
    samples, rate = read_samples(path)
    return integrated_loudness(np.asarray(samples, dtype=np.float64) / 32768.0, rate)


# ---- the pipeline ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ingested:
    duration_s: float
    loudness_lufs: float
    source_loudness_lufs: float
    peak_dbfs: float


def _peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20 * math.log10(peak / 32768.0) if peak > 0 else -120.0


def _clipped_share(samples: np.ndarray) -> float:
    full = np.abs(samples.astype(np.int32)) >= CLIP_LEVEL
    if not full.any():
        return 0.0
    # Count samples inside runs of at least CLIP_RUN full-scale samples.
    padded = np.concatenate(([0], full.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    runs = edges[1::2] - edges[0::2]
    return float(runs[runs >= CLIP_RUN].sum()) / len(samples)


def _speech_s(samples: np.ndarray, rate: int) -> float:
    n = rate // 50
    frames = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n)
    if frames.size == 0:
        return 0.0
    rms = np.sqrt(np.mean(frames**2, axis=1)) / 32768.0
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(rms)
    return float(np.sum(db > SILENCE_FLOOR_DB)) * 0.02


def _load(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = read_samples(path)
    return np.asarray(samples, dtype=np.int16), rate


def ingest(src: Path, dst: Path, *, max_s: float = DEFAULT_MAX_S) -> Ingested:
    """``src`` (any audio sox reads) -> ``dst`` (8 kHz mono 16-bit WAV, normalised), or
    RecordingRefusedError. Blocking (sox): run in a thread."""
    with tempfile.TemporaryDirectory(prefix="anbu-rec-") as tmp:
        work = Path(tmp)
        mono = work / "mono.wav"
        try:
            run_sox(src, "-r", SAMPLE_RATE, "-c", 1, "-b", 16, "-e", "signed-integer", mono)
        except Exception as exc:  # sox's own message says what it could not read
            raise RecordingRefusedError(Refusal.NOT_AUDIO, "sox cannot read it as audio") from exc
        samples, rate = _load(mono)
        if samples.size == 0:
            raise RecordingRefusedError(Refusal.NOT_AUDIO, "no samples")
        share = _clipped_share(samples)
        if share > CLIPPED_SHARE:
            raise RecordingRefusedError(
                Refusal.CLIPPED, f"{share:.2%} of the samples are clipped at full scale"
            )
        # Silent: judged on the level as recorded (after peak normalising, room hiss would
        # look like a voice).
        if _speech_s(samples, rate) < MIN_SPEECH_S:
            raise RecordingRefusedError(Refusal.SILENT, "no voice above the noise floor")
        source_lufs = integrated_loudness(samples / 32768.0, rate)
        # Trim leading and trailing room noise (40 dB below the peak for 0.1 s, from each
        # end): on the peak-normalised copy, so a quiet recording is trimmed like a loud one.
        trimmed = work / "trimmed.wav"
        trim = ("silence", 1, "0.1", "1%")
        run_sox(
            mono,
            trimmed,
            "gain",
            "-n",
            f"{PEAK_CEILING_DBFS:g}",
            *trim,
            "reverse",
            *trim,
            "reverse",
        )
        samples, rate = _load(trimmed)
        if samples.size == 0:
            raise RecordingRefusedError(Refusal.SILENT, "nothing left after trimming silence")
        duration = len(samples) / rate
        if duration > max_s:
            raise RecordingRefusedError(
                Refusal.TOO_LONG, f"{duration:.1f} s of speech, at most {max_s:.0f} s"
            )
        current, level = trimmed, integrated_loudness(samples / 32768.0, rate)
        for attempt in range(3):
            gain = TARGET_LUFS - level
            out = work / f"norm{attempt}.wav"
            if _peak_dbfs(_load(current)[0]) + gain <= PEAK_CEILING_DBFS:
                run_sox(current, out, "gain", f"{gain:.3f}")
            else:
                # Louder than the peaks allow: the limiter holds them at the ceiling.
                run_sox(
                    current,
                    out,
                    "gain",
                    "-l",
                    f"{gain:.3f}",
                    "gain",
                    "-n",
                    f"{PEAK_CEILING_DBFS:g}",
                )
            current = out
            level = loudness_of(current)
            if abs(level - TARGET_LUFS) <= LOUDNESS_TOLERANCE_LU / 2:
                break
        padded = work / "padded.wav"
        run_sox(current, padded, "pad", f"{LEAD_IN_S:.3f}", f"{TAIL_S:.3f}")
        final, _ = _load(padded)
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = dst.with_suffix(".partial.wav")
        partial.write_bytes(padded.read_bytes())
        partial.replace(dst)
        return Ingested(
            duration_s=round(len(final) / rate, 3),
            loudness_lufs=round(level, 2),
            source_loudness_lufs=round(source_lufs, 2),
            peak_dbfs=round(_peak_dbfs(final), 2),
        )


# ---- the store and its manifest ----------------------------------------------------------------


def scope_of(district_code: str | None, official_id: str | None = None) -> str:
    """The store's folder for an official's own recording, a district's, or the default."""
    if official_id is not None:
        # Official ids are uuid hex; anything else must not become a path.
        if not official_id.isalnum() or not official_id.isascii() or len(official_id) > 32:
            raise RecordingRefusedError(Refusal.NOT_AUDIO, "official id must be letters/digits")
        return f"official-{official_id}"
    if district_code is None:
        return "default"
    if not district_code.isdigit() or len(district_code) > 10:
        raise RecordingRefusedError(Refusal.NOT_AUDIO, "district code must be digits")
    return f"district-{district_code}"


def scopes_for(district_code: str | None, official_id: str | None = None) -> list[str]:
    """What a call plays, first found wins: the visiting official's own recording, the
    district's, the default."""
    return (
        ([scope_of(None, official_id)] if official_id else [])
        + ([scope_of(district_code)] if district_code else [])
        + ["default"]
    )


class RecordingStore:
    """Recorded prompts per scope, and the manifest of which source each prompt plays."""

    def __init__(self, root: Path, *, max_s: float = DEFAULT_MAX_S) -> None:
        self.root = root
        self.max_s = max_s

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def file(
        self, prompt: Prompt, district_code: str | None = None, official_id: str | None = None
    ) -> Path:
        return self.root / scope_of(district_code, official_id) / f"{prompt.value}.wav"

    def upload(
        self,
        prompt: Prompt,
        src: Path,
        district_code: str | None = None,
        official_id: str | None = None,
    ) -> Ingested:
        """Blocking (sox, file writes): run in a thread. With ``official_id`` the recording
        is that official's own (played to the residents they visit), whatever the district."""
        dst = self.file(prompt, district_code, official_id)
        result = ingest(src, dst, max_s=self.max_s)
        manifest = self.manifest()
        entries = manifest.setdefault("recordings", {})
        entries.setdefault(scope_of(district_code, official_id), {})[prompt.value] = {
            "file": str(dst.relative_to(self.root)),
            "uploaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **asdict(result),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".partial")
        tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
        tmp.replace(self.manifest_path)
        return result

    def upload_bytes(
        self,
        prompt: Prompt,
        data: bytes,
        district_code: str | None = None,
        official_id: str | None = None,
    ) -> Ingested:
        """:meth:`upload` of an uploaded body (the API's, the console's form): sox reads files,
        so the bytes go through a private temporary directory. Blocking: run in a thread."""
        with tempfile.TemporaryDirectory(prefix="anbu-upload-") as tmp:
            src = Path(tmp) / "upload"
            src.write_bytes(data)
            return self.upload(prompt, src, district_code, official_id)

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sources(
        self, district_code: str | None = None, official_id: str | None = None
    ) -> dict[str, str]:
        """Per prompt: ``recording:<scope>`` or ``tts`` (what a call in this district, to a
        resident this official visits, plays)."""
        scopes = scopes_for(district_code, official_id)
        out: dict[str, str] = {}
        for prompt in Prompt:
            found = next(
                (s for s in scopes if (self.root / s / f"{prompt.value}.wav").is_file()), None
            )
            out[prompt.value] = f"recording:{found}" if found else "tts"
        return out

    def path(
        self, prompt: Prompt, district_code: str | None, official_id: str | None = None
    ) -> Path | None:
        """The recording a call plays for ``prompt``, if any: the visiting official's, else
        the district's, else the default."""
        for scope in scopes_for(district_code, official_id):
            f = self.root / scope / f"{prompt.value}.wav"
            if f.is_file():
                return f
        return None


__all__ = [
    "LOUDNESS_TOLERANCE_LU",
    "TARGET_LUFS",
    "Ingested",
    "RecordingRefusedError",
    "RecordingStore",
    "Refusal",
    "ingest",
    "integrated_loudness",
    "loudness_of",
    "scope_of",
    "scopes_for",
]
