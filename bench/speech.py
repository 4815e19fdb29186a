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
from pathlib import Path

from anbu.domain.speech_intent import Intent
from bench.common import peak_rss_mb, write_results
from bench.speechset import MachineSample, Sample, build, build_machines
from ivr.speech import VoskRecognizer, load_model, read_wav
from ivr.stream import USABLE, CallAudio, Machine, Spoken

# What a clip can be labelled, and what the recognizer can make of it (doubtful: an ok below
# the sure confidence, asked again).
LABELS = (Intent.OK, Intent.HELP, Intent.CALLBACK, Intent.REPEAT, Intent.UNKNOWN)
CLASSES = (*LABELS[:-1], Intent.DOUBTFUL, Intent.UNKNOWN)


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
    ok_confidence: list[float] = []
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
        if result.intent in (Intent.OK, Intent.DOUBTFUL) and sample.label is Intent.OK:
            ok_confidence.append(min(w.confidence for w in result.words if w.in_speech))
        per_text[f"{sample.label}: {sample.text}"]["n"] += 1
        per_text[f"{sample.label}: {sample.text}"]["correct"] += result.intent is sample.label
        by_condition[sample.condition]["n"] += 1
        by_condition[sample.condition]["correct"] += result.intent is sample.label
        if result.intent is Intent.OK and sample.label is not Intent.OK:
            by_condition[sample.condition]["false_ok"] += 1
            false_ok.append(_row(sample, result.transcript))
        elif result.intent is not sample.label:
            misses[f"{sample.label}: {sample.text}"][str(result.intent)] += 1

    not_ok = sum(sum(confusion[c].values()) for c in LABELS if c is not Intent.OK)
    totals = {c: sum(confusion[c].values()) for c in CLASSES}
    recall = {str(c): round(confusion[c][c] / totals[c], 3) if totals[c] else None for c in CLASSES}
    results: dict[str, object] = {
        "clips": len(samples),
        "set": str(root),
        "set_build_s": round(set_s, 2),
        "confusion": {str(t): {str(p): confusion[t][p] for p in CLASSES} for t in LABELS},
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
        "sure_ok_confidence": recognizer.sure_ok_confidence,
        # The weakest word of every genuine yes heard as ok or doubtful, lowest first.
        "ok_confidence": sorted(round(c, 2) for c in ok_confidence),
        # A "다시" heard as ok would be the worst error: counted on its own.
        "repeat_taken_for_ok": confusion[Intent.REPEAT][Intent.OK],
        "false_ok_clips": false_ok,
        "misses_by_text": {text: dict(got) for text, got in sorted(misses.items())},
    }
    results.update(streamed(recognizer, root, samples))
    return results


OFFSETS_MS = (0, 10, 20, 40)
CHUNK = 10 * 320  # what the listener hands the analyser at a time: 200 ms


def listen_stream(
    recognizer: VoskRecognizer, pcm: bytes, *, detect: bool, during: bool = True
) -> Machine | Spoken | None:
    """What ``ivr.stream.StreamListener`` acts on when ``pcm`` arrives while the question
    plays (``during``): the first machine verdict or usable reply, else what the end of the
    listen makes of the last utterance (None: nothing). After the question the first
    utterance is the answer, usable or not."""
    audio = CallAudio(recognizer, spotter_model=recognizer.model if detect else None)
    for i in range(0, len(pcm), CHUNK):
        for event in audio.feed(pcm[i : i + CHUNK]):
            if isinstance(event, Machine) or event.result.intent in USABLE or not during:
                return event
    events = audio.flush()
    return events[0] if events else None


def streamed(recognizer: VoskRecognizer, root: Path, samples: list[Sample]) -> dict[str, object]:
    """Machine clips, and the labelled replies said *during* the question (barge-in)."""
    mroot, machines = build_machines()
    detected = right_kind = false_help = false_ok_m = beeps = before_beep = 0
    detect_s: list[float] = []
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    missed: list[dict[str, object]] = []
    for m in machines:
        pcm, _ = read_wav(mroot / m.file)
        event = listen_stream(recognizer, pcm, detect=True)
        per_kind[m.kind]["n"] += 1
        if isinstance(event, Machine):
            detected += 1
            per_kind[m.kind]["detected"] += 1
            right_kind += event.answerer.value == m.expected
            detect_s.append(event.at_s)
            if m.beep_s is not None:
                beeps += 1
                before_beep += event.at_s <= m.beep_s
        else:
            if m.beep_s is not None:
                beeps += 1
            missed.append(_machine_row(m, event))
            if isinstance(event, Spoken) and event.result.intent is Intent.HELP:
                false_help += 1
            if isinstance(event, Spoken) and event.result.intent is Intent.OK:
                false_ok_m += 1

    # The same labelled replies, heard during the question (streaming, machine detection on
    # as in a call's first listen) and after it (recorded, the earlier path).
    replies = [s for s in samples if s.kind == "speech" and s.label in USABLE]
    people = [s for s in samples if s.kind == "speech"]
    during = after = recorded_right = 0
    by_offset: Counter[int] = Counter()
    false_machine = false_ok_during = 0
    not_ok = 0
    during_by_text: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in people:
        pcm, rate = read_wav(root / sample.file)
        event = listen_stream(recognizer, pcm, detect=True)
        intent = event.result.intent if isinstance(event, Spoken) else Intent.UNKNOWN
        if isinstance(event, Machine):
            false_machine += 1
        if sample.label is not Intent.OK:
            not_ok += 1
            false_ok_during += intent is Intent.OK
        if sample in replies:
            later = listen_stream(recognizer, pcm, detect=True, during=False)
            after_intent = later.result.intent if isinstance(later, Spoken) else Intent.UNKNOWN
            recorded = recognizer.recognize_pcm(pcm, rate).intent
            # The decoder is sensitive to where a recording starts (10-40 ms moves a few
            # borderline clips either way): the recorded path at several starts, averaged.
            for ms in OFFSETS_MS:
                start = ms * rate // 1000 * 2
                by_offset[ms] += recognizer.recognize_pcm(pcm[start:], rate).intent is sample.label
            during += intent is sample.label
            after += after_intent is sample.label
            recorded_right += recorded is sample.label
            key = f"{sample.label}: {sample.text}"
            during_by_text[key]["n"] += 1
            during_by_text[key]["during"] += intent is sample.label
            during_by_text[key]["after"] += after_intent is sample.label
            during_by_text[key]["recorded"] += recorded is sample.label
    detect_s.sort()
    return {
        "machine_clips": len(machines),
        "machine_set": str(mroot),
        "machine_detected_rate": round(detected / len(machines), 4),
        "machine_kind_right_rate": round(right_kind / len(machines), 4),
        "machine_detected_by_kind": {k: f"{v['detected']}/{v['n']}" for k, v in per_kind.items()},
        "false_help_from_machines": false_help,
        "false_ok_from_machines": false_ok_m,
        "hung_up_before_beep_rate": round(before_beep / beeps, 4) if beeps else None,
        "machine_detection_s_p50": detect_s[len(detect_s) // 2] if detect_s else None,
        "machine_detection_s_max": detect_s[-1] if detect_s else None,
        "machines_missed": missed,
        "people_clips": len(people),
        "false_machine_from_people": false_machine,
        "barge_in_clips": len(replies),
        "barge_in_recall": round(during / len(replies), 4),
        "after_prompt_recall": round(after / len(replies), 4),
        # The earlier path: the reply recorded after the prompt (RECORD FILE), then decoded.
        "recorded_recall": round(sum(by_offset.values()) / len(OFFSETS_MS) / len(replies), 4),
        "recorded_recall_by_start_ms": {
            str(ms): round(by_offset[ms] / len(replies), 4) for ms in OFFSETS_MS
        },
        "barge_in_false_ok": false_ok_during,
        "barge_in_not_ok_clips": not_ok,
        "barge_in_by_text": {
            k: f"during {v['during']}, after {v['after']}, recorded {v['recorded']} of {v['n']}"
            for k, v in sorted(during_by_text.items())
        },
    }


def _machine_row(m: MachineSample, event: Machine | Spoken | None) -> dict[str, object]:
    heard = event.result.transcript if isinstance(event, Spoken) else None
    intent = str(event.result.intent) if isinstance(event, Spoken) else None
    return {"id": m.id, "kind": m.kind, "heard": heard, "intent": intent}


def _row(sample: Sample, transcript: str) -> dict[str, object]:
    return {"id": sample.id, "text": sample.text, "heard": transcript}


def print_table(results: dict[str, object]) -> None:
    confusion = results["confusion"]
    assert isinstance(confusion, dict)
    names = [str(c) for c in CLASSES]
    print(f"{'said / heard':<14}" + "".join(f"{n:>10}" for n in names) + f"{'recall':>9}")
    recall = results["recall"]
    assert isinstance(recall, dict)
    for t in (str(c) for c in LABELS):
        row = confusion[t]
        print(f"{t:<14}" + "".join(f"{row[p]:>10}" for p in names) + f"{recall[t]!s:>9}")
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
    print(
        f"machines: detected {results['machine_detected_rate']} of {results['machine_clips']} "
        f"{results['machine_detected_by_kind']}, right kind {results['machine_kind_right_rate']}, "
        f"before the beep {results['hung_up_before_beep_rate']}, "
        f"false help {results['false_help_from_machines']}, "
        f"false ok {results['false_ok_from_machines']}"
    )
    print(
        f"people: {results['false_machine_from_people']} of {results['people_clips']} taken "
        f"for a machine; barge-in recall {results['barge_in_recall']} vs after the prompt "
        f"{results['after_prompt_recall']} (recorded {results['recorded_recall']}); "
        "false ok during the prompt "
        f"{results['barge_in_false_ok']} of {results['barge_in_not_ok_clips']}"
    )


def main(argv: list[str] | None = None) -> int:
    del argv  # no options: the labelled set and the model are fixed
    results = run()
    write_results("speech", results)
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
