"""A labelled synthetic Korean speech set for the speech benchmark (and speech tests).

Every spoken clip is espeak-ng Korean in several voices and speeds, converted to 8 kHz 16-bit
mono like a recorded reply, in three line conditions:

- ``clean``      straight from the synthesizer,
- ``ulaw``       through G.711 u-law and back (what the phone network does),
- ``ulaw_noise`` pink noise mixed in at ~15 dB below the speech, then u-law.

Labels are the intents the recognizer should report (ok / help / callback / unknown). The
unknown class holds what must never become "ok": 여보세요, 누구세요, 아니요, 안 괜찮아요,
"can't hear you", unrelated sentences, an answering-machine greeting with its beep, silence,
line hiss, steady noises and syllable-rate modulated noise (which fools an energy gate).

Synthetic speech is not a resident's voice: the set measures the pipeline's honesty (false
ok) more than its accuracy on real callers. Build: ``python -m bench.speechset [out_dir]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from anbu.domain.speech_intent import Intent
from anbu.settings import DEFAULT_CACHE
from ivr.tts import ensure_tools, espeak, run_sox, wav_duration

SET_VERSION = 1
VOICES = ("ko", "ko+f2", "ko+m3")
RATES = (120, 160)
CONDITIONS = ("clean", "ulaw", "ulaw_noise")
NOISE_VOL = 0.1  # pink noise peak amplitude: RMS ~ -34 dBFS against speech at ~ -17 dBFS
LEAD_S, TAIL_S = 0.5, 1.0  # what Record() keeps around a reply before silence ends it

SPOKEN: dict[Intent, tuple[str, ...]] = {
    Intent.OK: ("네", "네 네", "네, 괜찮아요", "괜찮아요", "네, 괜찮습니다"),
    Intent.HELP: ("도와주세요", "살려 주세요", "아파요", "네, 도와주세요"),
    Intent.CALLBACK: ("바빠요", "나중에 전화해 주세요", "지금 바빠요"),
    Intent.UNKNOWN: (
        "여보세요",
        "누구세요",
        "아니요",
        "안 괜찮아요",
        "뭐라고요?",
        "잘 안 들려요",
        "오늘 날씨가 좋네요",
    ),
}
MACHINE_GREETING = (
    "안녕하세요. 지금은 전화를 받을 수 없습니다. 삐 소리가 나면 메시지를 남겨 주세요."
)
# Non-speech, 3 s each: (name, sox synth arguments).
NON_SPEECH: dict[str, tuple[str, ...]] = {
    "silence": ("trim", "0", "3"),
    "hiss": ("synth", "3", "whitenoise", "vol", "0.001"),  # ~ -65 dBFS line hiss
    "pink": ("synth", "3", "pinknoise", "vol", "0.3"),
    "white": ("synth", "3", "whitenoise", "vol", "0.2"),
    "brown": ("synth", "3", "brownnoise", "vol", "0.5"),
    # pink noise pulsing at 4 Hz, the syllable rate: passes the energy gate on purpose
    "pulsed": ("synth", "3", "pinknoise", "vol", "0.3", "tremolo", "4", "100"),
    "beep": ("synth", "0.6", "sine", "1000", "vol", "0.3", "pad", "0", "2.4"),
}


@dataclass(frozen=True, slots=True)
class Sample:
    id: str
    file: str  # relative to the set's directory
    label: Intent
    kind: str  # speech | machine | noise
    text: str
    voice: str
    rate: int
    condition: str


def _specs() -> list[Sample]:
    samples: list[Sample] = []
    for label, texts in SPOKEN.items():
        for n, text in enumerate(texts):
            for voice in VOICES:
                for rate in RATES:
                    for cond in CONDITIONS:
                        sid = f"{label}{n}-{voice.replace('+', '_')}-{rate}-{cond}"
                        samples.append(
                            Sample(sid, f"{sid}.wav", label, "speech", text, voice, rate, cond)
                        )
    for voice in VOICES:
        for cond in CONDITIONS:
            sid = f"machine-{voice.replace('+', '_')}-{cond}"
            samples.append(
                Sample(
                    sid,
                    f"{sid}.wav",
                    Intent.UNKNOWN,
                    "machine",
                    MACHINE_GREETING,
                    voice,
                    160,
                    cond,
                )
            )
    for name in NON_SPEECH:
        for cond in CONDITIONS:
            sid = f"noise-{name}-{cond}"
            samples.append(Sample(sid, f"{sid}.wav", Intent.UNKNOWN, "noise", name, "-", 0, cond))
    return samples


def _fingerprint(samples: Sequence[Sample]) -> str:
    material = json.dumps(
        [SET_VERSION, NOISE_VOL, LEAD_S, TAIL_S, NON_SPEECH, [asdict(s) for s in samples]],
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def apply_condition(clean: Path, out: Path, condition: str, tmp: Path) -> None:
    """Turn an 8 kHz clean clip into ``condition`` (see the module docstring)."""
    if condition == "clean":
        os.replace(clean, out)
        return
    src = clean
    if condition == "ulaw_noise":
        noise = tmp / "noise.wav"
        run_sox(
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            noise,
            "synth",
            f"{wav_duration(clean):.3f}",
            "pinknoise",
            "vol",
            str(NOISE_VOL),
        )
        src = tmp / "mixed.wav"
        run_sox("-m", "-v", "1", clean, "-v", "1", noise, src)
    elif condition != "ulaw":
        raise ValueError(f"unknown condition {condition!r}")
    ulaw = tmp / "ulaw.wav"
    run_sox(src, "-e", "u-law", ulaw)
    run_sox(ulaw, "-e", "signed-integer", "-b", "16", out)


def render_utterance(
    text: str, out: Path, *, voice: str = "ko", rate: int = 150, condition: str = "clean"
) -> Path:
    """One spoken clip as a recorded reply: 8 kHz 16-bit mono, peak -3 dBFS, padded."""
    with tempfile.TemporaryDirectory(prefix="anbu-speech-") as tmpdir:
        tmp = Path(tmpdir)
        raw = tmp / "raw.wav"
        espeak(text, raw, voice=voice, rate=rate)
        clean = tmp / "clean.wav"
        run_sox(
            raw,
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            clean,
            "gain",
            "-n",
            "-3",
            "pad",
            str(LEAD_S),
            str(TAIL_S),
        )
        apply_condition(clean, out, condition, tmp)
    return out


def _render_machine(sample: Sample, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="anbu-speech-") as tmpdir:
        tmp = Path(tmpdir)
        raw = tmp / "raw.wav"
        espeak(sample.text, raw, voice=sample.voice, rate=sample.rate)
        spoken = tmp / "spoken.wav"
        run_sox(
            raw,
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            spoken,
            "gain",
            "-n",
            "-3",
            "pad",
            str(LEAD_S),
            "0.3",
        )
        beep = tmp / "beep.wav"
        run_sox(
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            beep,
            "synth",
            "0.5",
            "sine",
            "1000",
            "vol",
            "0.5",
            "pad",
            "0",
            str(TAIL_S),
        )
        clean = tmp / "clean.wav"
        run_sox(spoken, beep, clean)
        apply_condition(clean, out, sample.condition, tmp)


def _render_noise(sample: Sample, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="anbu-speech-") as tmpdir:
        tmp = Path(tmpdir)
        clean = tmp / "clean.wav"
        args = NON_SPEECH[sample.text]
        if sample.text == "silence":
            run_sox(
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                clean,
                "synth",
                "3",
                "sine",
                "0",
                "vol",
                "0",
            )
        else:
            run_sox("-n", "-r", "8000", "-c", "1", "-b", "16", clean, *args)
        apply_condition(clean, out, sample.condition, tmp)


def _render(sample: Sample, root: Path) -> None:
    out = root / sample.file
    if out.is_file():
        return
    part = root / f".part-{sample.file}"
    if sample.kind == "speech":
        render_utterance(
            sample.text, part, voice=sample.voice, rate=sample.rate, condition=sample.condition
        )
    elif sample.kind == "machine":
        _render_machine(sample, part)
    else:
        _render_noise(sample, part)
    os.replace(part, out)


def build(out_dir: Path | None = None) -> tuple[Path, list[Sample]]:
    """Generate the set (idempotent: an existing complete set is reused) and return it."""
    ensure_tools()
    samples = _specs()
    base = out_dir or DEFAULT_CACHE
    root = base / "speechset" / f"v{SET_VERSION}-{_fingerprint(samples)}"
    labels = root / "labels.json"
    if labels.is_file():
        return root, samples
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda s: _render(s, root), samples))
    labels.write_text(
        json.dumps([asdict(s) for s in samples], ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return root, samples


if __name__ == "__main__":
    where, made = build(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"{len(made)} clips in {where}")
