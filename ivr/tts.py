"""Prompt rendering: the Korean catalogue -> 8 kHz mono telephone WAVs, cached, never silent.

``render_catalogue`` renders every prompt of ``audio/catalogue.toml`` into ``<out_dir>/<id>.wav``
(Asterisk plays them by absolute path) and writes ``manifest.json`` beside them. Per prompt:

1. engines are tried in order (default gTTS, then espeak-ng). gTTS needs Google's servers: it
   runs in a daemon thread with a hard time budget, and after its first failure in a run it is
   not tried again (a network that drops packets would otherwise cost the budget per prompt);
2. the engine's output is converted with sox to 8 kHz mono 16-bit, its speech level brought to
   ``TARGET_SPEECH_DBFS`` (peaks kept below ``PEAK_CEILING_DBFS``) and padded with a short
   lead-in silence, so the first syllable is not lost while the RTP stream starts;
3. results are cached under ``<cache_dir>/prompts`` by sha256 of the text, engine, voice, rate
   and ``FORMAT_VERSION``: a cache hit copies the file and synthesises nothing;
4. a prompt that no engine can render gets the ``generic`` prompt's audio, never silence.

This never runs on a call's path: ``anbu prompts render`` (``render_prompts_command``) runs it
at build/admin time and the rendered espeak-ng files ship in ``audio/rendered``.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import enum
import hashlib
import io
import json
import logging
import math
import operator
import os
import shutil
import string
import subprocess
import tempfile
import threading
import tomllib
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from anbu.domain.replies import Prompt
from anbu.errors import AnbuError

if TYPE_CHECKING:
    from anbu.settings import DEFAULT_CACHE, Settings

log = logging.getLogger(__name__)

# Bump when the conversion chain changes (rate, level, padding): it invalidates the cache.
FORMAT_VERSION = 1
SAMPLE_RATE = 8000
TARGET_SPEECH_DBFS = -19.0  # level of the active speech frames
PEAK_CEILING_DBFS = -1.0  # never amplify a peak above this (no clipping, no limiter)
ESPEAK_NORMAL_WPM = 175  # espeak-ng's default rate, for reference in the catalogue
TOOL_PACKAGES = ("espeak-ng", "sox", "libsox-fmt-mp3")  # Debian; mp3 is what gTTS returns


class TtsEngine(enum.StrEnum):
    GTTS = "gtts"
    ESPEAK = "espeak"


DEFAULT_ENGINES: tuple[TtsEngine, ...] = (TtsEngine.GTTS, TtsEngine.ESPEAK)


class TtsError(AnbuError):
    """Prompt rendering failed."""


class ToolMissingError(TtsError):
    """espeak-ng or sox is missing and cannot be installed here."""


class CatalogueError(TtsError):
    """``audio/catalogue.toml`` is malformed; the message names the prompt and field."""


class EngineError(TtsError):
    """One engine could not render one text (the pipeline then tries the next engine)."""

    def __init__(self, engine: TtsEngine, message: str) -> None:
        super().__init__(f"{engine}: {message}")
        self.engine = engine


class PromptRenderError(TtsError):
    """A prompt could not be rendered and no fallback audio exists for it."""


# --------------------------------------------------------------------------- tools


_tools_ok = False
_tools_lock = threading.Lock()


def _tools_present() -> bool:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        return False
    formats = subprocess.run(
        ["sox", "-h"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    return " mp3 " in formats


def ensure_tools() -> None:
    """Install espeak-ng, sox and sox's mp3 support from Debian if missing. Idempotent.

    Blocking (apt can take a minute): async callers use ``asyncio.to_thread``. Waits for the
    dpkg lock instead of failing when another apt run is in progress.
    """
    global _tools_ok
    with _tools_lock:
        if _tools_ok or _tools_present():
            _tools_ok = True
            return
        if os.geteuid() != 0:
            raise ToolMissingError(
                "espeak-ng/sox missing and not root: apt-get install -y " + " ".join(TOOL_PACKAGES)
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=600",
            *TOOL_PACKAGES,
        ]
        log.info("installing %s", " ".join(TOOL_PACKAGES))
        done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run(
                ["apt-get", "update", "-o", "DPkg::Lock::Timeout=600"],
                capture_output=True,
                env=env,
                check=False,
            )
            done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0 or not _tools_present():
            raise ToolMissingError(f"apt-get install failed: {done.stderr.strip()[-500:]}")
        _tools_ok = True


def run_sox(*args: str | int | Path) -> None:
    """Run sox quietly, without dither (-D) so the same input gives the same bytes."""
    cmd = ["sox", "-q", "-D", "-R", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise TtsError(f"sox failed ({done.returncode}): {done.stderr.strip()[-300:]}")


def espeak(text: str, out: Path, *, voice: str = "ko", rate: int = 150) -> None:
    """Render ``text`` with espeak-ng to a WAV file (22.05 kHz as the engine makes it)."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(out), "--", text]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(TtsEngine.ESPEAK, str(exc)) from exc
    if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
        raise EngineError(TtsEngine.ESPEAK, f"exit {done.returncode}: {done.stderr.strip()}")


# --------------------------------------------------------------------------- audio


def read_samples(path: Path) -> tuple[array.array[int], int]:
    """16-bit mono samples and rate of a WAV file."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise TtsError(f"{path}: expected 16-bit mono")
        samples = array.array("h")
        samples.frombytes(wav.readframes(wav.getnframes()))
        return samples, wav.getframerate()


def wav_duration(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def speech_levels(samples: Sequence[int], rate: int) -> tuple[float, float]:
    """(level of the active 20 ms frames, peak), both dBFS; active = within 30 dB of the loudest."""
    n = max(1, rate // 50)
    powers = []
    for i in range(0, len(samples) - n + 1, n):
        frame = samples[i : i + n]
        powers.append(sum(map(operator.mul, frame, frame)) / n)
    peak = max((abs(s) for s in samples), default=0)
    if not powers or max(powers) <= 0 or peak == 0:
        return -120.0, -120.0
    loudest = max(powers)
    active = [p for p in powers if p >= loudest / 1000]
    full = 32768.0**2
    return 10 * math.log10(sum(active) / len(active) / full), 20 * math.log10(peak / 32768.0)


def to_telephone(src: Path, dst: Path, *, lead_in_s: float, tail_s: float) -> None:
    """Any audio sox reads -> 8 kHz mono 16-bit WAV, speech level normalised, padded."""
    with tempfile.TemporaryDirectory(prefix="anbu-tts-") as tmp:
        mono = Path(tmp) / "mono.wav"
        run_sox(src, "-r", SAMPLE_RATE, "-c", 1, "-b", 16, "-e", "signed-integer", mono)
        samples, rate = read_samples(mono)
        level, peak = speech_levels(samples, rate)
        if level <= -100:
            raise TtsError(f"{src}: the engine produced silence")
        gain = min(TARGET_SPEECH_DBFS - level, PEAK_CEILING_DBFS - peak)
        run_sox(mono, dst, "gain", f"{gain:.2f}", "pad", f"{lead_in_s:.3f}", f"{tail_s:.3f}")


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """One catalogue entry. ``rate`` is espeak-ng words per minute; ``slow`` is gTTS's mode."""

    prompt: Prompt
    text: str
    rate: int
    slow: bool
    voice: str

    def render_text(self, district: str) -> str:
        return self.text.format(district=district)


@dataclass(frozen=True, slots=True)
class Catalogue:
    default_district: str
    lead_in_s: float
    tail_s: float
    prompts: Mapping[Prompt, PromptSpec]


def load_catalogue(path: Path) -> Catalogue:
    """Read and validate the TOML catalogue: every Prompt id, no other, only ``{district}``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    defaults = data.get("defaults", {})
    entries = data.get("prompts", {})
    known = {p.value for p in Prompt}
    unknown = sorted(set(entries) - known)
    missing = sorted(known - set(entries))
    if unknown or missing:
        raise CatalogueError(f"{path}: unknown prompt ids {unknown}, missing prompt ids {missing}")
    prompts: dict[Prompt, PromptSpec] = {}
    for pid, entry in entries.items():
        text = str(entry.get("text", "")).strip()
        if not text:
            raise CatalogueError(f"{path}: prompt {pid!r} has no text")
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        if fields - {"district"}:
            raise CatalogueError(f"{path}: prompt {pid!r} uses unknown parameters {fields}")
        rate = int(entry.get("rate", defaults.get("rate", 140)))
        if not 80 <= rate <= 450:
            raise CatalogueError(f"{path}: prompt {pid!r} rate {rate} outside 80-450 wpm")
        prompts[Prompt(pid)] = PromptSpec(
            prompt=Prompt(pid),
            text=text,
            rate=rate,
            slow=bool(entry.get("slow", defaults.get("slow", False))),
            voice=str(entry.get("voice", defaults.get("voice", "ko"))),
        )
    if "{district}" in prompts[Prompt.GENERIC].text:
        # The fallback must render whenever anything does: keep it free of parameters.
        raise CatalogueError(f"{path}: the generic prompt may not use {{district}}")
    return Catalogue(
        default_district=str(defaults.get("district", "")),
        lead_in_s=float(defaults.get("lead_in_ms", 300)) / 1000,
        tail_s=float(defaults.get("tail_ms", 200)) / 1000,
        prompts=prompts,
    )


# --------------------------------------------------------------------------- engines


class Synthesizer(Protocol):
    """One TTS engine: writes audio sox can read for ``text`` into ``out`` (or raises)."""

    engine: TtsEngine

    def voice(self, spec: PromptSpec) -> str:
        """What identifies the voice in the cache key (engine-specific)."""
        ...

    def rate(self, spec: PromptSpec) -> str:
        """What identifies the speed in the cache key (engine-specific)."""
        ...

    def synthesize(self, text: str, spec: PromptSpec, out: Path) -> None: ...


class EspeakSynthesizer:
    """espeak-ng, offline and ~1000x real time; robotic but always there."""

    engine = TtsEngine.ESPEAK
    suffix = ".wav"

    def voice(self, spec: PromptSpec) -> str:
        return spec.voice

    def rate(self, spec: PromptSpec) -> str:
        return f"{spec.rate}wpm"

    def synthesize(self, text: str, spec: PromptSpec, out: Path) -> None:
        espeak(text, out, voice=spec.voice, rate=spec.rate)


class GttsSynthesizer:
    """gTTS (Google Translate's voice, Korean). Needs the internet; never on a call's path.

    ``timeout_s`` is the whole budget per prompt: gTTS's own timeout defaults to None (it can
    wait forever on a network that drops packets), so it runs in a daemon thread that is
    abandoned when the budget is spent, and requests gets the same timeout so the thread ends
    soon after. gTTS honours the standard ``HTTPS_PROXY`` variable (that is also how the tests
    point it at a local fake server). The first failure disables it for this synthesizer's
    lifetime (one render run).
    """

    engine = TtsEngine.GTTS
    suffix = ".mp3"

    def __init__(self, timeout_s: float = 5.0, *, lang: str = "ko", tld: str = "com") -> None:
        self.timeout_s = timeout_s
        self.lang = lang
        self.tld = tld
        self.disabled_because: str | None = None

    def voice(self, spec: PromptSpec) -> str:
        return f"{self.lang}@{self.tld}"

    def rate(self, spec: PromptSpec) -> str:
        return "slow" if spec.slow else "normal"

    def synthesize(self, text: str, spec: PromptSpec, out: Path) -> None:
        if self.disabled_because is not None:
            raise EngineError(self.engine, f"disabled for this run ({self.disabled_because})")
        box: list[bytes | BaseException] = []

        def run() -> None:
            try:
                from gtts import gTTS

                buf = io.BytesIO()
                gTTS(
                    text,
                    lang=self.lang,
                    tld=self.tld,
                    slow=spec.slow,
                    timeout=(self.timeout_s, self.timeout_s),
                ).write_to_fp(buf)
                box.append(buf.getvalue())
            except BaseException as exc:  # handed to the caller's thread below
                box.append(exc)

        worker = threading.Thread(target=run, name="gtts", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if not box:
            self.disabled_because = f"no answer within {self.timeout_s:g} s"
            raise EngineError(self.engine, self.disabled_because)
        outcome = box[0]
        if isinstance(outcome, BaseException):
            self.disabled_because = f"{type(outcome).__name__}: {outcome}"
            raise EngineError(self.engine, self.disabled_because) from outcome
        if not outcome:
            self.disabled_because = "empty audio"
            raise EngineError(self.engine, self.disabled_because)
        out.write_bytes(outcome)


def default_synthesizers(gtts_timeout_s: float = 5.0) -> dict[TtsEngine, Synthesizer]:
    return {
        TtsEngine.GTTS: GttsSynthesizer(gtts_timeout_s),
        TtsEngine.ESPEAK: EspeakSynthesizer(),
    }


# --------------------------------------------------------------------------- rendering


def cache_key(text: str, engine: TtsEngine, voice: str, rate: str, *, padding: str) -> str:
    """sha256 over everything that changes the rendered bytes."""
    material = json.dumps(
        [FORMAT_VERSION, str(engine), voice, rate, padding, text], ensure_ascii=False
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """How one prompt ended up. ``engine`` is None when it fell back (see ``fallback``)."""

    prompt: Prompt
    file: Path
    text: str
    engine: TtsEngine | None
    cache_key: str | None
    duration_s: float
    cache_hit: bool = False
    fallback: Prompt | None = None  # GENERIC when this prompt plays the generic audio
    stale: bool = False  # nothing rendered: the file from an earlier render was kept
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RenderReport:
    out_dir: Path
    manifest: Path
    district: str
    prompts: tuple[RenderedPrompt, ...]
    synthesized: int  # engine calls that produced audio (0 on a fully cached run)

    @property
    def cache_hits(self) -> int:
        return sum(p.cache_hit for p in self.prompts)

    @property
    def fallbacks(self) -> tuple[Prompt, ...]:
        return tuple(p.prompt for p in self.prompts if p.fallback is not None or p.stale)

    def summary(self) -> str:
        lines = [f"rendered {len(self.prompts)} prompts into {self.out_dir}"]
        for p in self.prompts:
            how = f"fallback to {p.fallback}" if p.fallback else str(p.engine)
            how += " (stale: kept the earlier file)" if p.stale else ""
            hit = " (cached)" if p.cache_hit else ""
            lines.append(f"  {p.prompt:<9} {p.duration_s:5.2f} s  {how}{hit}")
        return "\n".join(lines)


@contextlib.contextmanager
def _atomic_target(dst: Path) -> Iterator[Path]:
    """Yield a temp path next to ``dst``; rename over it on success (Asterisk may be reading)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; Asterisk may run as another user
    try:
        yield Path(tmp)
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class _Renderer:
    def __init__(
        self,
        catalogue: Catalogue,
        cache_dir: Path,
        engines: Sequence[TtsEngine],
        synthesizers: Mapping[TtsEngine, Synthesizer],
    ) -> None:
        self.catalogue = catalogue
        self.cache_dir = cache_dir
        self.engines = engines
        self.synthesizers = synthesizers
        self.padding = f"{catalogue.lead_in_s:.3f}+{catalogue.tail_s:.3f}"
        self.synthesized = 0

    def render(self, spec: PromptSpec, text: str) -> tuple[Path, TtsEngine, str, bool, list[str]]:
        """Return (cached file, engine, key, cache hit, errors) or raise PromptRenderError."""
        errors: list[str] = []
        for engine in self.engines:
            synth = self.synthesizers[engine]
            key = cache_key(text, engine, synth.voice(spec), synth.rate(spec), padding=self.padding)
            cached = self.cache_dir / f"{key}.wav"
            if cached.is_file():
                return cached, engine, key, True, errors
            try:
                self._synthesize(synth, spec, text, cached)
            except TtsError as exc:
                log.warning("prompt %s: %s failed: %s", spec.prompt, engine, exc)
                errors.append(str(exc))
                continue
            return cached, engine, key, False, errors
        raise PromptRenderError(f"prompt {spec.prompt}: every engine failed: {errors}")

    def _synthesize(self, synth: Synthesizer, spec: PromptSpec, text: str, cached: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="anbu-tts-") as tmp:
            raw = Path(tmp) / f"raw{getattr(synth, 'suffix', '.wav')}"
            synth.synthesize(text, spec, raw)
            self.synthesized += 1
            with _atomic_target(cached) as target:
                to_telephone(
                    raw, target, lead_in_s=self.catalogue.lead_in_s, tail_s=self.catalogue.tail_s
                )


def render_catalogue(
    catalogue_path: Path,
    out_dir: Path,
    district: str | None = None,
    engines: Sequence[TtsEngine] = DEFAULT_ENGINES,
    *,
    cache_dir: Path | None = None,
    gtts_timeout_s: float = 5.0,
    synthesizers: Mapping[TtsEngine, Synthesizer] | None = None,
) -> RenderReport:
    """Render every catalogue prompt to ``out_dir/<id>.wav`` and write ``manifest.json``.

    Blocking (subprocesses, maybe network): async callers run it with ``asyncio.to_thread``.
    ``district`` fills ``{district}``; None uses the catalogue's default. Raises
    ``PromptRenderError`` only if a prompt can be neither rendered nor replaced by ``generic``.
    """
    ensure_tools()
    catalogue = load_catalogue(catalogue_path)
    district = (district or "").strip() or catalogue.default_district
    cache_dir = (cache_dir or DEFAULT_CACHE) / "prompts"
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    synths = dict(synthesizers or default_synthesizers(gtts_timeout_s))
    renderer = _Renderer(catalogue, cache_dir, list(engines), synths)

    # generic first: it is what every failed prompt falls back to.
    order = [Prompt.GENERIC, *(p for p in Prompt if p is not Prompt.GENERIC)]
    results: dict[Prompt, RenderedPrompt] = {}
    for prompt in order:
        spec = catalogue.prompts[prompt]
        text = spec.render_text(district)
        dst = out_dir / f"{prompt.value}.wav"
        try:
            source, engine, key, hit, errors = renderer.render(spec, text)
        except PromptRenderError as exc:
            results[prompt] = _fall_back(prompt, dst, text, results.get(Prompt.GENERIC), exc)
            continue
        with _atomic_target(dst) as target:
            shutil.copyfile(source, target)
        results[prompt] = RenderedPrompt(
            prompt=prompt,
            file=dst,
            text=text,
            engine=engine,
            cache_key=key,
            duration_s=round(wav_duration(dst), 3),
            cache_hit=hit,
            errors=tuple(errors),
        )
    report = RenderReport(
        out_dir=out_dir,
        manifest=out_dir / "manifest.json",
        district=district,
        prompts=tuple(results[p] for p in Prompt),
        synthesized=renderer.synthesized,
    )
    _write_manifest(report)
    return report


def _fall_back(
    prompt: Prompt,
    dst: Path,
    text: str,
    generic: RenderedPrompt | None,
    exc: PromptRenderError,
) -> RenderedPrompt:
    """Never silence: the generic prompt's audio, else the file already in place, else raise."""
    if generic is not None:
        log.error("prompt %s: playing the generic prompt instead (%s)", prompt, exc)
        with _atomic_target(dst) as target:
            shutil.copyfile(generic.file, target)
        return dataclasses.replace(
            generic,
            prompt=prompt,
            file=dst,
            text=text,
            engine=None,
            cache_hit=False,
            fallback=Prompt.GENERIC,
            stale=generic.stale,
            errors=(str(exc),),
        )
    if dst.is_file():
        # Nothing renders at all (not even generic): keep the file shipped or rendered before.
        log.error("prompt %s: keeping the existing %s (%s)", prompt, dst, exc)
        return RenderedPrompt(
            prompt=prompt,
            file=dst,
            text=text,
            engine=None,
            cache_key=None,
            duration_s=round(wav_duration(dst), 3),
            stale=True,
            errors=(str(exc),),
        )
    raise exc


def _write_manifest(report: RenderReport) -> None:
    # No timestamps or cache-hit flags: the manifest ships in git and must not churn.
    manifest = {
        "format_version": FORMAT_VERSION,
        "sample_rate": SAMPLE_RATE,
        "district": report.district,
        "prompts": {
            p.prompt.value: {
                "file": p.file.name,
                "text": p.text,
                "engine": p.engine.value if p.engine else None,
                "cache_key": p.cache_key,
                "duration_s": p.duration_s,
                "fallback": p.fallback.value if p.fallback else None,
                "stale": p.stale,
            }
            for p in report.prompts
        },
    }
    with _atomic_target(report.manifest) as target:
        target.write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )


def render_prompts_command(settings: Settings) -> RenderReport:
    """``anbu prompts render``: the catalogue in ``settings.audio_dir`` -> ``audio/rendered``."""
    tts = settings.tts
    return render_catalogue(
        settings.audio_dir / "catalogue.toml",
        settings.audio_dir / "rendered",
        tts.district,
        tuple(TtsEngine(e) for e in tts.engines),
        cache_dir=settings.cache_dir,
        gtts_timeout_s=tts.gtts_timeout_s,
    )
