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
import math
import os
import sys
import tempfile
import wave
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
    # "say that again": the question is repeated, never an ok (issue 16's must-show)
    Intent.REPEAT: ("다시", "다시요", "다시 한번"),
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


def _synth(out: Path, *effect: str) -> None:
    """A generated 8 kHz 16-bit mono clip (``effect``: sox's synth/trim/pad arguments)."""
    run_sox("-n", "-r", "8000", "-c", "1", "-b", "16", out, *effect)


def apply_condition(clean: Path, out: Path, condition: str, tmp: Path) -> None:
    """Turn an 8 kHz clean clip into ``condition`` (see the module docstring)."""
    if condition == "clean":
        os.replace(clean, out)
        return
    src = clean
    if condition == "ulaw_noise":
        noise = tmp / "noise.wav"
        _synth(noise, "synth", f"{wav_duration(clean):.3f}", "pinknoise", "vol", str(NOISE_VOL))
        src = tmp / "mixed.wav"
        run_sox("-m", "-v", "1", clean, "-v", "1", noise, src)
    elif condition != "ulaw":
        raise ValueError(f"unknown condition {condition!r}")
    ulaw = tmp / "ulaw.wav"
    run_sox(src, "-e", "u-law", ulaw)
    run_sox(ulaw, "-e", "signed-integer", "-b", "16", out)


def _speak(
    text: str, out: Path, tmp: Path, *, voice: str, rate: int, lead_s: float, tail_s: float
) -> None:
    """espeak-ng as a recorded reply: 8 kHz 16-bit mono, peak -3 dBFS, padded before and after."""
    raw = tmp / "raw.wav"
    espeak(text, raw, voice=voice, rate=rate)
    pad = ("pad", str(lead_s), str(tail_s))
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
        out,
        "gain",
        "-n",
        "-3",
        *pad,
    )


def _speak_then_beep(
    text: str,
    out: Path,
    tmp: Path,
    *,
    voice: str,
    rate: int,
    lead_s: float,
    gap_s: float,
    tail_s: float,
) -> float:
    """Words, ``gap_s`` of silence, a voicemail beep (1 kHz, 0.5 s), ``tail_s`` of silence;
    returns where the beep starts."""
    spoken = tmp / "spoken.wav"
    _speak(text, spoken, tmp, voice=voice, rate=rate, lead_s=lead_s, tail_s=gap_s)
    beep_s = wav_duration(spoken)
    beep = tmp / "beep.wav"
    _synth(beep, "synth", "0.5", "sine", "1000", "vol", "0.5", "pad", "0", str(tail_s))
    run_sox(spoken, beep, out)
    return beep_s


def render_utterance(
    text: str, out: Path, *, voice: str = "ko", rate: int = 150, condition: str = "clean"
) -> Path:
    """One spoken clip as a recorded reply: 8 kHz 16-bit mono, peak -3 dBFS, padded."""
    with tempfile.TemporaryDirectory(prefix="anbu-speech-") as tmpdir:
        tmp = Path(tmpdir)
        clean = tmp / "clean.wav"
        _speak(text, clean, tmp, voice=voice, rate=rate, lead_s=LEAD_S, tail_s=TAIL_S)
        apply_condition(clean, out, condition, tmp)
    return out


def _render_machine(sample: Sample, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="anbu-speech-") as tmpdir:
        tmp = Path(tmpdir)
        clean = tmp / "clean.wav"
        _speak_then_beep(
            sample.text,
            clean,
            tmp,
            voice=sample.voice,
            rate=sample.rate,
            lead_s=LEAD_S,
            gap_s=0.3,
            tail_s=TAIL_S,
        )
        apply_condition(clean, out, sample.condition, tmp)


def _render_noise(sample: Sample, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="anbu-speech-") as tmpdir:
        tmp = Path(tmpdir)
        clean = tmp / "clean.wav"
        args = NON_SPEECH[sample.text]
        if sample.text == "silence":
            _synth(clean, "synth", "3", "sine", "0", "vol", "0")
        else:
            _synth(clean, *args)
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


# --------------------------------------------------------------------------- machine clips
#
# What answers when a person does not: the carriers' voicemail announcements (SKT/KT 소리샘
# with their beep, LG U+ without), answering-machine greetings with a beep, and music or a
# ringback tone after answer. Each is what the engine hears from the moment of answer.

MACHINE_SET_VERSION = 1
VOICEMAIL_TEXTS: dict[str, tuple[str, bool]] = {  # name -> (text, beep after it)
    "skt_off": (
        "지금 거신 전화는 전원이 꺼져 있어 소리샘으로 연결되오며, 삐 소리 후 통화료가 부과됩니다.",
        True,
    ),
    "skt_noanswer": (
        "연결이 되지 않아 소리샘으로 연결되오며, 삐 소리 후 통화료가 부과됩니다.",
        True,
    ),
    "kt_off": (
        "고객님의 전화기가 꺼져 있어 음성사서함으로 연결됩니다. 삐 소리 후 통화료가 부과됩니다.",
        True,
    ),
    "lgu_off": (
        "고객님의 전화기가 꺼져 있어 연결되지 않습니다. 잠시 후 다시 걸어 주십시오.",
        False,
    ),
}
GREETING_TEXTS: dict[str, str] = {
    "greeting_away": MACHINE_GREETING,
    "greeting_absent": "지금은 부재중입니다. 삐 소리 후에 메시지를 남겨 주세요.",
    "greeting_named": "김철수입니다. 전화를 받을 수 없으니 메시지를 남겨 주시면 연락드리겠습니다.",
}
MUSIC = ("ringback", "melody", "chords")
MACHINE_CONDITIONS = CONDITIONS


@dataclass(frozen=True, slots=True)
class MachineSample:
    id: str
    file: str
    expected: str  # voicemail | machine
    kind: str  # voicemail | greeting | music
    text: str
    voice: str
    condition: str
    beep: bool = False  # a beep follows the words
    beep_s: float | None = None  # where the beep starts in the clip (set when rendered)


def _machine_specs() -> list[MachineSample]:
    out: list[MachineSample] = []
    for voice in VOICES:
        v = voice.replace("+", "_")
        for cond in MACHINE_CONDITIONS:
            for name, (text, beep) in VOICEMAIL_TEXTS.items():
                sid = f"{name}-{v}-{cond}"
                out.append(
                    MachineSample(
                        sid, f"{sid}.wav", "voicemail", "voicemail", text, voice, cond, beep
                    )
                )
            for name, text in GREETING_TEXTS.items():
                sid = f"{name}-{v}-{cond}"
                out.append(
                    MachineSample(sid, f"{sid}.wav", "machine", "greeting", text, voice, cond, True)
                )
    for name in MUSIC:
        for cond in MACHINE_CONDITIONS:
            sid = f"{name}-{cond}"
            out.append(MachineSample(sid, f"{sid}.wav", "machine", "music", name, "-", cond))
    return out


def _write_wav(path: Path, samples: Sequence[float]) -> None:
    frames = b"".join(
        int(max(-32767, min(32767, round(s)))).to_bytes(2, "little", signed=True) for s in samples
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


def _music(name: str) -> list[float]:
    """8 kHz music without a voice: Korea's ringback tone (440+480 Hz, 1 s on, 2 s off), a
    legato melody with harmonics (a 컬러링 tune), and sustained triads."""
    rate = 8000
    out: list[float] = []
    if name == "ringback":
        for _ in range(3):
            out += [
                4000
                * (math.sin(2 * math.pi * 440 * i / rate) + math.sin(2 * math.pi * 480 * i / rate))
                for i in range(rate)
            ]
            out += [0.0] * (2 * rate)
        return out
    notes = {"C": 261.6, "D": 293.7, "E": 329.6, "F": 349.2, "G": 392.0, "A": 440.0, "B": 493.9}
    if name == "melody":
        tune = "EDCDEEEDDDEGGEDCDEEEDDEDC"
        for n, note in enumerate(tune):
            f = notes[note] * 2
            length = int(0.32 * rate)
            for i in range(length):
                env = min(1.0, i / 200) * (0.6 + 0.4 * math.exp(-i / 1500))
                t = (n * length + i) / rate
                out.append(
                    6000
                    * env
                    * sum(math.sin(2 * math.pi * f * k * t) / k**1.3 for k in (1, 2, 3, 4))
                )
        return out
    for chord in ("CEG", "FAC", "GBD", "CEG"):
        for _ in range(int(2.0 * rate)):
            t = len(out) / rate
            out.append(3000 * sum(math.sin(2 * math.pi * notes[c] * t) for c in chord))
    return out


def _render_machine_sample(sample: MachineSample, root: Path) -> MachineSample:
    out = root / sample.file
    with tempfile.TemporaryDirectory(prefix="anbu-machine-") as tmpdir:
        tmp = Path(tmpdir)
        clean = tmp / "clean.wav"
        beep_s = None
        if sample.kind == "music":
            _write_wav(clean, _music(sample.text))
        elif sample.beep:
            beep_s = _speak_then_beep(
                sample.text,
                clean,
                tmp,
                voice=sample.voice,
                rate=160,
                lead_s=0.3,
                gap_s=0.4,
                tail_s=2.0,
            )
        else:
            _speak(sample.text, clean, tmp, voice=sample.voice, rate=160, lead_s=0.3, tail_s=0.4)
        part = root / f".part-{sample.file}"
        apply_condition(clean, part, sample.condition, tmp)
        os.replace(part, out)
    return MachineSample(**{**asdict(sample), "beep_s": beep_s})


def build_machines(out_dir: Path | None = None) -> tuple[Path, list[MachineSample]]:
    """Generate the machine clips (idempotent) and return them with their beep times."""
    ensure_tools()
    specs = _machine_specs()
    material = json.dumps(
        [MACHINE_SET_VERSION, NOISE_VOL, [asdict(s) for s in specs]], ensure_ascii=False
    )
    root = (
        (out_dir or DEFAULT_CACHE)
        / "machineset"
        / (f"v{MACHINE_SET_VERSION}-{hashlib.sha256(material.encode()).hexdigest()[:12]}")
    )
    labels = root / "labels.json"
    if labels.is_file():
        rows = json.loads(labels.read_text(encoding="utf-8"))
        return root, [MachineSample(**row) for row in rows]
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        made = list(pool.map(lambda s: _render_machine_sample(s, root), specs))
    labels.write_text(
        json.dumps([asdict(s) for s in made], ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return root, made
