"""The report's exports: JSON, CSV (one long table), XLSX (a sheet per part), HTML with charts
drawn as inline SVG (Korean labels; the console can embed :func:`html_body`), and PDF (the HTML
printed by a headless Chromium).
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("json", "csv", "xlsx", "html", "pdf")

LABELS: dict[str, str] = {
    # tiers and sources
    "calls": "통화",
    "app": "앱(걸음 수)",
    "iot": "IoT",
    "none": "프로필 없음",
    "call_records": "통화 기록",
    "plug": "스마트 플러그",
    "sensor": "동작·문 센서",
    "steps": "걸음 수",
    "power": "전력 사용",
    "light": "조명 변화",
    "motion": "움직임",
    # levels
    "concern": "관심",
    "caution": "주의",
    "serious": "심각",
    # check-in sources
    "signal": "위험 신호",
    "api": "연계 시스템",
    "routine": "정기 안부",
    "self_test": "자가 점검",
    # rules
    "quiet": "무활동",
    "quiet_long": "장기 무활동",
    "low": "활동 저하",
    # outcomes and results
    "ok": "괜찮음",
    "help": "도움 요청",
    "callback": "다시 전화",
    "no_response": "무응답",
    "unreachable": "연결 안 됨",
    "declined": "수신 거부",
    "invalid_number": "없는 번호",
    "open": "진행 중",
    "answered": "응답",
    "no_answer": "받지 않음",
    "busy": "통화 중",
    "congestion": "망 혼잡",
    "rejected": "거절",
    "failed": "실패",
    # findings
    "safe": "안전 확인",
    "visited": "방문 확인",
    "hospitalised": "입원",
    "died": "사망",
    "false_alarm": "오경보",
    "quiet_habit": "안전(평소 조용함)",
    # device issues
    "stale": "응답 없음",
    "offline": "오프라인",
}

CAUSES = {
    "1": "1 없는 번호",
    "16": "16 정상 종료",
    "17": "17 통화 중",
    "18": "18 응답 없음",
    "19": "19 받지 않음",
    "20": "20 전원 꺼짐·서비스 지역 밖",
    "21": "21 거절",
    "34": "34 회선 없음",
}


def label(key: str) -> str:
    if ":" in key:  # channel:rule
        a, b = key.split(":", 1)
        return f"{LABELS.get(a, a)} · {LABELS.get(b, b)}"
    return LABELS.get(key, key)


def to_json(fig: dict[str, Any]) -> bytes:
    return (json.dumps(fig, ensure_ascii=False, indent=2) + "\n").encode()


# --- CSV: one long table (section, item, value), easy to pivot -----------------------------


def flatten(fig: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(section, dotted item, value) for every leaf; months as ``YYYY-MM.field``."""
    for section, value in fig.items():
        if section == "months":
            for m in value:
                for k, v in m.items():
                    if k != "month":
                        yield section, f"{m['month']}.{k}", v
            continue
        yield from ((section, k, v) for k, v in _leaves(value, ""))


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if not value and prefix:
            return
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def to_csv(fig: dict[str, Any]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "item", "value"])
    for section, item, v in flatten(fig):
        w.writerow([section, item, "" if v is None else v])
    # A BOM so that spreadsheet programs open the Korean text as UTF-8.
    return ("\ufeff" + buf.getvalue()).encode()


# --- XLSX -----------------------------------------------------------------------------------

MONTH_COLUMNS = [
    ("month", "월"),
    ("signals", "신호"),
    ("checkins", "안부 확인"),
    ("attempts", "통화 시도"),
    ("answer_rate", "응답률"),
    ("cleared_by_call", "통화로 해소"),
    ("unreachable", "연결 안 됨"),
    ("escalated", "경보 전달"),
    ("alerts", "경보"),
    ("ack_p50_s", "확인 p50(초)"),
    ("ack_within_target_share", "목표 내 확인"),
    ("findings", "현장 확인"),
    ("true_alarms", "실제 위기"),
    ("true_alarm_rate", "실제 위기 비율"),
    ("device_tasks", "기기 점검"),
]

SECTIONS = [
    ("residents", "주민"),
    ("signals", "신호"),
    ("levels", "위험 단계"),
    ("checkins", "안부 확인"),
    ("calls", "통화"),
    ("alerts", "경보"),
    ("findings", "현장 확인"),
    ("device_tasks", "기기 점검"),
]


def to_xlsx(fig: dict[str, Any]) -> bytes:
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font
    except ImportError as exc:  # the report extra is not installed
        raise RuntimeError("XLSX needs openpyxl: pip install 'anbu[report]'") from exc
    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "요약"
    bold = Font(bold=True)
    summary.append(["안부 효과 보고서", _title(fig)])
    summary["A1"].font = bold
    for k, v in headline(fig):
        summary.append([k, v])
    months = wb.create_sheet("월별")
    months.append([h for _, h in MONTH_COLUMNS])
    for cell in months[1]:
        cell.font = bold
    for m in fig["months"]:
        months.append([m.get(k) for k, _ in MONTH_COLUMNS])
    for key, title in SECTIONS:
        ws = wb.create_sheet(title)
        ws.append(["항목", "값", "key"])
        for cell in ws[1]:
            cell.font = bold
        for item, v in _leaves(fig[key], ""):
            ws.append([_item_label(item), v, item])
        ws.column_dimensions["A"].width = 40
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _item_label(item: str) -> str:
    return ".".join(label(p) for p in item.split("."))


def _title(fig: dict[str, Any]) -> str:
    d, p = fig["district"], fig["period"]
    where = f"{d['name']}({d['code']})" + (f" {d['dong']}" if d.get("dong") else "")
    return f"{where} {p['from']} ~ {p['to']}"


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def headline(fig: dict[str, Any]) -> list[tuple[str, str]]:
    c, calls, a, f = fig["checkins"], fig["calls"], fig["alerts"], fig["findings"]
    return [
        ("모니터링 주민", _fmt(fig["residents"]["total"])),
        ("신호", _fmt(fig["signals"]["total"])),
        ("안부 확인", _fmt(c["total"])),
        ("통화 응답률", _fmt(calls["answer_rate"], pct=True)),
        ("통화로 해소", f"{_fmt(c['cleared_by_call'])} ({_fmt(c['cleared_share'], pct=True)})"),
        ("경보 전달", f"{_fmt(c['escalated'])} ({_fmt(c['escalated_share'], pct=True)})"),
        ("연결 안 됨 비율", _fmt(c["unreachable_share"], pct=True)),
        ("경보 확인 p50 / p90(초)", f"{_fmt(a['to_ack']['p50_s'])} / {_fmt(a['to_ack']['p90_s'])}"),
        ("목표 시간 내 확인", a["ack_within_target"]),
        ("현장 확인", _fmt(f["total"])),
        ("실제 위기 비율", _fmt(f["true_alarm_rate"], pct=True)),
        ("기기 점검", _fmt(fig["device_tasks"]["opened"])),
    ]


# --- HTML with SVG charts -------------------------------------------------------------------

FONT = "'NanumGothic', 'Noto Sans CJK KR', 'Malgun Gothic', sans-serif"
_COLOURS = ["#2b6cb0", "#dd6b20", "#38a169", "#c53030", "#805ad5", "#718096", "#d69e2e"]


def bar_chart(title: str, items: Sequence[tuple[str, float]], width: int = 520) -> str:
    """Horizontal bars, one per item, value at the end: an inline SVG."""
    row, left, top = 24, 170, 30
    h = top + row * max(len(items), 1) + 10
    peak = max((v for _, v in items), default=0) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
        f'aria-label="{html.escape(title)}" font-family="{html.escape(FONT)}" font-size="12">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    span = width - left - 70
    for i, (name, v) in enumerate(items):
        y = top + i * row
        w = max(1.0, span * v / peak) if v else 0.0
        colour = _COLOURS[i % len(_COLOURS)]
        out.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="16" fill="{colour}"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + 15}">{_fmt(v)}</text>'
        )
    if not items:
        out.append(f'<text x="{left}" y="{top + 15}">자료 없음</text>')
    out.append("</svg>")
    return "".join(out)


def month_chart(
    title: str, months: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]
) -> str:
    """Grouped vertical bars per month (e.g. check-ins and alerts), with a legend."""
    width, height, left, bottom, top = 640, 260, 50, 40, 40
    n, k = max(len(months), 1), max(len(series), 1)
    peak = max((v for _, vs in series for v in vs), default=0) or 1
    slot = (width - left - 10) / n
    bw = max(2.0, slot * 0.8 / k)
    plot_h = height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" font-family="{html.escape(FONT)}" font-size="11">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_fmt(peak)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for j, (name, _) in enumerate(series):
        x = left + 120 * j
        out.append(
            f'<rect x="{x}" y="22" width="10" height="10" fill="{_COLOURS[j % 7]}"/>'
            f'<text x="{x + 14}" y="31">{html.escape(name)}</text>'
        )
    for i, m in enumerate(months):
        x0 = left + i * slot + slot * 0.1
        for j, (_, vs) in enumerate(series):
            v = vs[i] if i < len(vs) else 0
            bh = plot_h * v / peak
            out.append(
                f'<rect x="{x0 + j * bw:.1f}" y="{top + plot_h - bh:.1f}" width="{bw:.1f}" '
                f'height="{bh:.1f}" fill="{_COLOURS[j % 7]}"><title>{html.escape(m)} '
                f"{_fmt(v)}</title></rect>"
            )
        out.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{html.escape(m[2:])}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _counts(d: dict[str, Any], labels: dict[str, str] | None = None) -> list[tuple[str, float]]:
    return [((labels or {}).get(k) or label(k), float(v)) for k, v in d.items()]


def html_body(fig: dict[str, Any]) -> str:
    """The report as an HTML fragment (a ``<section>``), for a page or the console to embed."""
    c, calls, a, f, t = (
        fig["checkins"],
        fig["calls"],
        fig["alerts"],
        fig["findings"],
        fig["device_tasks"],
    )
    months = fig["months"]
    names = [m["month"] for m in months]
    parts = [
        '<section class="anbu-report">',
        f"<h1>안부 효과 보고서</h1><p class=sub>{html.escape(_title(fig))}</p>",
        "<h2>요약</h2>",
        _table(headline(fig), ["항목", "값"]),
        "<h2>월별 추이</h2>",
        month_chart(
            "월별 안부 확인과 경보",
            names,
            [
                ("안부 확인", [m["checkins"] for m in months]),
                ("통화로 해소", [m["cleared_by_call"] for m in months]),
                ("경보", [m["alerts"] for m in months]),
            ],
        ),
        _table(
            [
                [_fmt(m.get(k), pct=k.endswith(("rate", "share"))) for k, _ in MONTH_COLUMNS]
                for m in months
            ],
            [h for _, h in MONTH_COLUMNS],
        ),
        "<h2>주민과 신호</h2>",
        bar_chart("등급별 주민", _counts(fig["residents"]["by_tier"])),
        bar_chart("신호원별 주민", _counts(fig["residents"]["by_source"])),
        bar_chart("출처별 신호", _counts(fig["signals"]["by_source"])),
        bar_chart("도달한 위험 단계(주민 수)", _counts(fig["levels"]["residents_reaching_level"])),
        "<h2>안부 확인과 통화</h2>",
        bar_chart("출처별 안부 확인", _counts(c["by_source"])),
        bar_chart("신호·규칙별 안부 확인", _counts(c["by_trigger"])),
        bar_chart("결과", _counts(c["outcomes"])),
        bar_chart("통화 시도 결과", _counts(calls["results"])),
        bar_chart("종료 원인(Q.850)", _counts(calls["causes"], CAUSES)),
        _table(
            [
                ["통화 시도", _fmt(calls["attempts"])],
                ["응답률", _fmt(calls["answer_rate"], pct=True)],
                ["사례당 시도(평균)", _fmt(calls["attempts_per_case"]["mean"])],
                ["전원 꺼짐 비율", _fmt(calls["phone_off_share"], pct=True)],
                ["음성사서함 비율", "측정 안 함(자동응답 감지 없음)"],
            ],
            ["항목", "값"],
        ),
        "<h2>경보와 확인</h2>",
        f"<p class=big>{html.escape(a['ack_within_target'])}</p>",
        _table(
            [
                ["경보", _fmt(a["alerts"]), "", ""],
                [
                    "사례 종료 → 경보",
                    "",
                    _fmt(a["case_to_alert"]["p50_s"]),
                    _fmt(a["case_to_alert"]["p90_s"]),
                ],
                [
                    "게이트웨이 접수",
                    "",
                    _fmt(a["to_gateway"]["p50_s"]),
                    _fmt(a["to_gateway"]["p90_s"]),
                ],
                ["단말 도달", "", _fmt(a["to_delivery"]["p50_s"]), _fmt(a["to_delivery"]["p90_s"])],
                [
                    "확인(전체)",
                    _fmt(a["acknowledged"]),
                    _fmt(a["to_ack"]["p50_s"]),
                    _fmt(a["to_ack"]["p90_s"]),
                ],
            ]
            + [
                [f"확인({k}단계)", _fmt(v["n"]), _fmt(v["p50_s"]), _fmt(v["p90_s"])]
                for k, v in a["to_ack_by_step"].items()
            ],
            ["항목", "건수", "p50(초)", "p90(초)"],
        ),
        "<h2>현장 확인 결과</h2>",
        bar_chart("확인 결과", _counts(f["by_kind"])),
        _table(
            [
                [label(k), v["findings"], v["true"], _fmt(v["rate"], pct=True)]
                for k, v in f["true_alarm_rate_by_source"].items()
            ],
            ["신호원", "확인", "실제 위기", "비율"],
        ),
        _table(
            [
                [label(k), v["findings"], v["true"], _fmt(v["rate"], pct=True)]
                for k, v in f["true_alarm_rate_by_rule"].items()
            ],
            ["규칙", "확인", "실제 위기", "비율"],
        ),
        "<h2>기기 점검</h2>",
        _table(
            [
                ["열림", _fmt(t["opened"])],
                ["해결", _fmt(t["resolved"])],
                ["미해결", _fmt(t["still_open"])],
                [
                    "해결 시간 p50 / p90(시간)",
                    f"{_fmt(t['time_to_fix_h']['p50'])} / {_fmt(t['time_to_fix_h']['p90'])}",
                ],
            ],
            ["항목", "값"],
        ),
        "</section>",
    ]
    return "\n".join(parts)


CSS = f"""
body {{ font-family: {FONT}; margin: 24px; color: #1a202c; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #4a5568; margin-top: 4px; }}
h2 {{ border-bottom: 2px solid #2b6cb0; padding-bottom: 2px; margin-top: 28px; }}
table {{ border-collapse: collapse; margin: 8px 0; font-size: 12px; }}
td, th {{ border: 1px solid #cbd5e0; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
svg {{ display: block; margin: 10px 0; }} .big {{ font-size: 20px; font-weight: bold; }}
@media print {{ h2 {{ break-before: auto; }} svg, table {{ break-inside: avoid; }} }}
"""


def to_html(fig: dict[str, Any]) -> bytes:
    page = (
        '<!doctype html><html lang="ko"><head><meta charset="utf-8">'
        f"<title>안부 효과 보고서 {html.escape(_title(fig))}</title>"
        f"<style>{CSS}</style></head><body>{html_body(fig)}</body></html>\n"
    )
    return page.encode()


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class PdfUnavailableError(RuntimeError):
    pass


async def to_pdf(fig: dict[str, Any]) -> bytes:
    """The HTML report printed by headless Chromium (Debian's ``chromium`` package)."""
    exe = chromium()
    if exe is None:
        raise PdfUnavailableError("PDF needs chromium (apt-get install chromium fonts-nanum)")
    with tempfile.TemporaryDirectory(prefix="anbu-report-") as tmp:
        page, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_bytes(to_html(fig))
        proc = await asyncio.create_subprocess_exec(
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp}/profile",
            f"--print-to-pdf={out}",
            page.as_uri(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        if proc.returncode != 0 or not out.exists():
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise PdfUnavailableError(f"chromium could not print the report: {tail[0]}")
        return out.read_bytes()


async def render(fig: dict[str, Any], fmt: str) -> bytes:
    if fmt == "json":
        return to_json(fig)
    if fmt == "csv":
        return to_csv(fig)
    if fmt == "xlsx":
        return await asyncio.to_thread(to_xlsx, fig)
    if fmt == "html":
        return to_html(fig)
    if fmt == "pdf":
        return await to_pdf(fig)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
