"""Speech benchmark: the labelled synthetic set through the real recognizer.

    python -m bench.speech            # builds the set (bench/speechset.py) if needed

Prints the confusion table (ok / help / callback / unknown), the false-ok rate (aim: zero),
the decoder's real-time factor, model load time and peak memory, and writes
bench/results/speech.json. What the numbers mean for real callers: audio/README.md.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict

from anbu.domain.speech_intent import Intent
from bench.common import peak_rss_mb, write_results
from bench.speechset import Sample, build
from ivr.speech import VoskRecognizer, load_model, read_wav

CLASSES = (Intent.OK, Intent.HELP, Intent.CALLBACK, Intent.UNKNOWN)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run() -> dict[str, object]:
    started = time.perf_counter()
    root, samples = build()
    set_s = time.perf_counter() - started

    rss_before = _rss_mb()
    started = time.perf_counter()
    load_model()
    load_s = time.perf_counter() - started
    model_rss_mb = _rss_mb() - rss_before
    recognizer = VoskRecognizer.load()

    confusion: dict[Intent, Counter[Intent]] = defaultdict(Counter)
    by_condition: dict[str, Counter[str]] = defaultdict(Counter)
    false_ok: list[dict[str, object]] = []
    misses: dict[str, Counter[str]] = defaultdict(Counter)
    audio_s = decoded_audio_s = decode_wall_s = decode_cpu_s = 0.0
    gated = Counter[str]()
    per_text: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        pcm, rate = read_wav(root / sample.file)
        wall, cpu = time.perf_counter(), time.process_time()
        result = recognizer.recognize_pcm(pcm, rate)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        audio_s += result.duration_s
        if not result.gated:
            decoded_audio_s += result.duration_s
            decode_wall_s += wall
            decode_cpu_s += cpu
        else:
            gated[sample.kind] += 1
        confusion[sample.label][result.intent] += 1
        per_text[f"{sample.label}: {sample.text}"]["n"] += 1
        per_text[f"{sample.label}: {sample.text}"]["correct"] += result.intent is sample.label
        by_condition[sample.condition]["n"] += 1
        by_condition[sample.condition]["correct"] += result.intent is sample.label
        if result.intent is Intent.OK and sample.label is not Intent.OK:
            by_condition[sample.condition]["false_ok"] += 1
            false_ok.append(_row(sample, result.transcript))
        elif result.intent is not sample.label:
            misses[f"{sample.label}: {sample.text}"][str(result.intent)] += 1

    not_ok = sum(sum(confusion[c].values()) for c in CLASSES if c is not Intent.OK)
    totals = {c: sum(confusion[c].values()) for c in CLASSES}
    recall = {str(c): round(confusion[c][c] / totals[c], 3) if totals[c] else None for c in CLASSES}
    results: dict[str, object] = {
        "clips": len(samples),
        "set": str(root),
        "set_build_s": round(set_s, 2),
        "confusion": {str(t): {str(p): confusion[t][p] for p in CLASSES} for t in CLASSES},
        "false_ok": len(false_ok),
        "false_ok_rate": round(len(false_ok) / not_ok, 4) if not_ok else 0.0,
        "recall": recall,
        "recall_by_text": {
            text: f"{c['correct']}/{c['n']}" for text, c in sorted(per_text.items())
        },
        "by_condition": {c: dict(v) for c, v in sorted(by_condition.items())},
        "gated": dict(gated),
        "rtf": round(decode_wall_s / decoded_audio_s, 4) if decoded_audio_s else None,
        "rtf_cpu": round(decode_cpu_s / decoded_audio_s, 4) if decoded_audio_s else None,
        "audio_s": round(audio_s, 1),
        "load_s": round(load_s, 2),
        "model_rss_mb": round(model_rss_mb, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "grammar_size": len(recognizer.grammar),
        "gate": {
            "floor_dbfs": recognizer.gate.floor_dbfs,
            "above_noise_db": recognizer.gate.above_noise_db,
            "min_voiced_s": recognizer.gate.min_voiced_s,
        },
        "min_ok_confidence": recognizer.min_ok_confidence,
        "false_ok_clips": false_ok,
        "misses_by_text": {text: dict(got) for text, got in sorted(misses.items())},
    }
    return results


def _row(sample: Sample, transcript: str) -> dict[str, object]:
    return {"id": sample.id, "text": sample.text, "heard": transcript}


def print_table(results: dict[str, object]) -> None:
    confusion = results["confusion"]
    assert isinstance(confusion, dict)
    names = [str(c) for c in CLASSES]
    print(f"{'said / heard':<14}" + "".join(f"{n:>10}" for n in names) + f"{'recall':>9}")
    recall = results["recall"]
    assert isinstance(recall, dict)
    for t in names:
        row = confusion[t]
        print(f"{t:<14}" + "".join(f"{row[p]:>10}" for p in names) + f"{recall[t]:>9}")
    print(
        f"\nclips {results['clips']}  false ok {results['false_ok']} "
        f"(rate {results['false_ok_rate']})  gated {results['gated']}"
    )
    print(f"by condition: {results['by_condition']}")
    print(
        f"rtf {results['rtf']} (cpu {results['rtf_cpu']})  load {results['load_s']} s  "
        f"model rss {results['model_rss_mb']} MB  peak rss {results['peak_rss_mb']} MB"
    )
    for row in results["false_ok_clips"]:  # type: ignore[attr-defined]
        print(f"  FALSE OK {row['id']}: {row['text']!r} heard {row['heard']!r}")


def main(argv: list[str] | None = None) -> int:
    del argv  # no options: the labelled set and the model are fixed
    results = run()
    write_results("speech", results)
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
