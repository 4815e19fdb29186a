"""SIPp (Debian ``sip-tester``) as the far end: a SIP stack nobody here wrote.

- :func:`uas_scenario` writes a UAS scenario XML for one resident's phone behaviour: the
  provisional responses (180 / 183 with early media), the final answer (a 4xx-6xx with or
  without ``Reason``, a 200 with the codecs given, or nothing at all), and what the phone does
  once answered (press keys by SIP INFO, play an RTP pcap: RFC 4733 events or in-band tones,
  hang up with a BYE with or without ``Reason``).
- :func:`dtmf_pcap` builds the pcap SIPp plays (RFC 4733 events on any payload type, or in-band
  DTMF tones in PCMU/PCMA), generated at test time.
- :class:`Sipp` runs one SIPp process on a port and checks how it ended.

A missing ``sipp`` binary is a loud failure (bootstrap installs ``sip-tester``), never a skip.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------- scenarios

# The headers every reply copies from the request it answers (RFC 3261 8.2.6.2).
REPLY_HEAD = """      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]"""

_CODECS = {"PCMU": 0, "PCMA": 8}


@dataclass(frozen=True)
class Phone:
    """One resident's phone as SIPp plays it."""

    # Provisional responses before the final one, e.g. (180,) or (183,) (183 carries SDP).
    provisional: tuple[int, ...] = ()
    # Final response: 200 answers; a 4xx-6xx refuses; None never answers (INVITE unanswered,
    # or, after provisionals, rings until the engine CANCELs).
    final: int | None = 200
    reason: str | None = None  # e.g. "Q.850;cause=20" on the final response
    codecs: tuple[str, ...] = ("PCMU",)
    telephone_event_pt: int | None = 101  # None: telephone-event not offered in the answer
    # After the ACK: ("pause", ms) | ("info", "1", "dtmf-relay"|"dtmf") | ("pcap", path)
    actions: tuple[tuple[str, ...], ...] = ()
    # How the call ends once answered: the phone sends BYE (with ``bye_reason`` or without),
    # or waits for the engine's BYE.
    phone_hangs_up: bool = False
    bye_reason: str | None = None


def _sdp(phone: Phone, *, early: bool = False) -> str:
    pts = [_CODECS[c] for c in phone.codecs]
    if phone.telephone_event_pt is not None and not early:
        pts.append(phone.telephone_event_pt)
    lines = [
        "v=0",
        "o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]",
        "s=-",
        "c=IN IP[media_ip_type] [media_ip]",
        "t=0 0",
        f"m=audio [media_port] RTP/AVP {' '.join(str(p) for p in pts)}",
    ]
    lines += [f"a=rtpmap:{_CODECS[c]} {c}/8000" for c in phone.codecs]
    if phone.telephone_event_pt is not None and not early:
        pt = phone.telephone_event_pt
        lines += [f"a=rtpmap:{pt} telephone-event/8000", f"a=fmtp:{pt} 0-16"]
    lines.append("a=sendrecv")
    return "\n".join(f"      {line}" for line in lines)


def _response(
    code: int, text: str, *, sdp: str | None = None, extra: str = "", invite: bool = True
) -> str:
    head = f"""
      SIP/2.0 {code} {text}
{REPLY_HEAD}
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
{extra}"""
    if sdp is None:
        body = "      Content-Length: 0\n"
    else:
        body = f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}\n"
    # Only a final response to the INVITE is retransmitted until its ACK.
    retrans = ' retrans="500"' if code >= 200 and invite else ""
    return f"  <send{retrans}><![CDATA[\n{head.rstrip()}\n{body}\n    ]]></send>\n"


_REASONS = {
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    484: "Address Incomplete",
    486: "Busy Here",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}


def _request(method: str, extra: str = "", body: str = "", content_type: str = "") -> str:
    body_headers = (
        f"      Content-Type: {content_type}\n      Content-Length: [len]\n\n      {body}\n"
        if body
        else "      Content-Length: 0\n"
    )
    return f"""  <send retrans="500"><![CDATA[

      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:phone@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To:[$from]
      [last_Call-ID:]
      CSeq: [cseq] {method}
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{extra}{body_headers}
    ]]></send>
  <recv response="200"/>
"""


def uas_scenario(phone: Phone, path: Path) -> Path:
    """Write the SIPp UAS scenario for ``phone`` to ``path``."""
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="anbu far end">\n',
        # Requests we send inside the dialog (BYE, INFO) need the INVITE's From as their To;
        # SIPp refuses a variable that is assigned but never used.
        '  <recv request="INVITE" rrs="true">\n    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="from"/>\n'
        "    </action>\n  </recv>\n"
        if _sends_requests(phone)
        else '  <recv request="INVITE" rrs="true"/>\n',
        "  <send><![CDATA[\n\n      SIP/2.0 100 Trying\n      [last_Via:]\n      [last_From:]\n"
        "      [last_To:]\n      [last_Call-ID:]\n      [last_CSeq:]\n"
        "      Content-Length: 0\n\n    ]]></send>\n"
        if phone.provisional or phone.final is not None
        else "",
    ]
    for code in phone.provisional:
        sdp = _sdp(phone, early=True) if code == 183 else None
        parts.append(_response(code, _REASONS[code], sdp=sdp))
    if phone.final is None:
        if phone.provisional:
            # Ring until the engine gives up: it CANCELs, we end the INVITE with 487.
            parts.append('  <recv request="CANCEL"/>\n')
            parts.append(_response(200, "OK", invite=False))
            parts.append(
                "  <send><![CDATA[\n\n      SIP/2.0 487 Request Terminated\n"
                "      [last_Via:]\n      [last_From:]\n"
                "      [last_To:];tag=[pid]SIPpTag01[call_number]\n      [last_Call-ID:]\n"
                "      CSeq: [last_cseq_number] INVITE\n      Content-Length: 0\n\n    ]]></send>\n"
            )
            parts.append('  <recv request="ACK"/>\n')
        else:
            # Never answer the INVITE: swallow its retransmissions for a while, then stop.
            # (SIPp takes the retransmitted INVITEs for what they are and ignores them.)
            parts.append('  <pause milliseconds="4500"/>\n')
    elif phone.final >= 300:
        extra = f"      Reason: {phone.reason}\n" if phone.reason else ""
        parts.append(_response(phone.final, _REASONS.get(phone.final, "Refused"), extra=extra))
        parts.append('  <recv request="ACK"/>\n')
    else:
        parts.append(_response(200, "OK", sdp=_sdp(phone)))
        parts.append('  <recv request="ACK"/>\n')
        for action in phone.actions:
            parts.append(_action(action))
        if phone.phone_hangs_up:
            extra = f"      Reason: {phone.bye_reason}\n" if phone.bye_reason else ""
            parts.append(_request("BYE", extra))
        else:
            parts.append('  <recv request="BYE"/>\n')
            parts.append(_response(200, "OK", invite=False))
    parts.append("</scenario>\n")
    path.write_text("".join(parts), encoding="iso-8859-1")
    return path


def _sends_requests(phone: Phone) -> bool:
    return phone.final == 200 and (
        phone.phone_hangs_up or any(a[0] == "info" for a in phone.actions)
    )


def _action(action: tuple[str, ...]) -> str:
    kind = action[0]
    if kind == "pause":
        return f'  <pause milliseconds="{int(action[1])}"/>\n'
    if kind == "pcap":
        # Plays in the background; the scenario goes on (normally to wait for the BYE).
        return f'  <nop><action><exec play_pcap_audio="{action[1]}"/></action></nop>\n'
    if kind == "info":
        digit, style = action[1], action[2]
        if style == "dtmf-relay":
            return _request(
                "INFO",
                body=f"Signal={digit}\n      Duration=160",
                content_type="application/dtmf-relay",
            )
        return _request("INFO", body=digit, content_type="application/dtmf")
    raise ValueError(f"unknown SIPp action {kind!r}")


# --------------------------------------------------------------------------- pcaps

_DTMF_FREQS = {
    "1": (697, 1209),
    "2": (697, 1336),
    "3": (697, 1477),
    "4": (770, 1209),
    "5": (770, 1336),
    "6": (770, 1477),
    "7": (852, 1209),
    "8": (852, 1336),
    "9": (852, 1477),
    "*": (941, 1209),
    "0": (941, 1336),
    "#": (941, 1477),
}
_EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}


def _ulaw(sample: int) -> int:
    """G.711 mu-law of one 16-bit sample."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, 32635) + 0x84
    exponent = min(7, max(0, (magnitude >> 7).bit_length() - 1))
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw(sample: int) -> int:
    """G.711 A-law of one 16-bit sample."""
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = next((i for i, end in enumerate(_ALAW_SEG_END) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    value = seg << 4
    value |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return value ^ mask


def _tone_frames(digit: str, codec: str, tone_ms: int, gap_ms: int) -> list[bytes]:
    low, high = _DTMF_FREQS[digit]
    encode = _ulaw if codec == "PCMU" else _alaw
    samples = []
    for i in range(8 * (gap_ms + tone_ms + gap_ms)):
        t = i / 8000
        on = 8 * gap_ms <= i < 8 * (gap_ms + tone_ms)
        value = 7000 * (math.sin(2 * math.pi * low * t) + math.sin(2 * math.pi * high * t))
        samples.append(int(value) if on else 0)
    data = bytes(encode(s) for s in samples)
    return [data[i : i + 160] for i in range(0, len(data), 160)]


@dataclass
class _Rtp:
    pt: int
    marker: bool
    seq: int
    timestamp: int
    payload: bytes
    at_ms: int


def _pcap_bytes(packets: Sequence[_Rtp]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for p in packets:
        rtp = (
            struct.pack(
                "!BBHII", 0x80, (0x80 if p.marker else 0) | p.pt, p.seq, p.timestamp, 0x0A0B0C0D
            )
            + p.payload
        )
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = (
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                0,
                0,
                64,
                17,
                0,
                bytes([127, 0, 0, 1]),
                bytes([127, 0, 0, 1]),
            )
            + udp
        )
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        sec, ms = divmod(p.at_ms, 1000)
        out.append(struct.pack("<IIII", 1_700_000_000 + sec, ms * 1000, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def dtmf_pcap(
    path: Path,
    digit: str,
    *,
    method: str,
    codec: str = "PCMU",
    event_pt: int = 101,
    lead_ms: int = 200,
) -> Path:
    """An RTP pcap pressing ``digit``: ``method`` "rfc4733" (events on ``event_pt``) or
    "inband" (the two DTMF tones in ``codec``). Audio frames of silence lead in."""
    codec_pt = _CODECS[codec]
    silence = bytes([0xFF if codec == "PCMU" else 0xD5]) * 160
    packets: list[_Rtp] = []
    seq, ts, at = 1000, 8000, 0

    def add(pt: int, payload: bytes, *, marker: bool = False, advance: bool = True) -> None:
        nonlocal seq, ts, at
        packets.append(_Rtp(pt, marker, seq, ts, payload, at))
        seq += 1
        at += 20
        if advance:
            ts += 160

    for _ in range(lead_ms // 20):
        add(codec_pt, silence)
    if method == "inband":
        for frame in _tone_frames(digit, codec, tone_ms=200, gap_ms=100):
            add(codec_pt, frame)
    elif method == "rfc4733":
        event = _EVENT_CODES[digit]
        start_ts = ts
        steps = 8
        for i in range(steps):
            end = i >= steps - 3
            duration = 160 * (i + 1) if not end else 160 * (steps - 2)
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            packets.append(_Rtp(event_pt, i == 0, seq, start_ts, payload, at))
            seq += 1
            at += 20
        ts = start_ts + 160 * steps
        for _ in range(10):
            add(codec_pt, silence)
    else:
        raise ValueError(f"unknown DTMF method {method!r}")
    path.write_bytes(_pcap_bytes(packets))
    return path


# --------------------------------------------------------------------------- process


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise RuntimeError("sipp not found: install Debian sip-tester (scripts/bootstrap.sh)")
    return found


@dataclass
class Sipp:
    """One SIPp UAS on ``port`` playing ``scenario`` for ``calls`` calls."""

    scenario: Path
    port: int
    media_port: int
    work_dir: Path
    calls: int = 1
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log(self) -> Path:
        return self.work_dir / "sipp.out"

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sipp_binary(),
            "-sf",
            str(self.scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(self.media_port),
            "-m",
            str(self.calls),
            "-l",
            str(max(1, self.calls)),
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.work_dir / "errors.log"),
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
            )
        # SIPp binds its port within milliseconds; wait until it does (or died).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipp exited at start: {self.output()}")
            if _udp_bound(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError("sipp did not bind its port")

    def wait(self, timeout_s: float = 20.0) -> int:
        """SIPp's exit code: 0 = every call followed the scenario."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)

    def output(self) -> str:
        text = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        errors = self.work_dir / "errors.log"
        if errors.exists():
            text += "\n--- errors ---\n" + errors.read_text(errors="replace")[-2000:]
        return text


def _udp_bound(port: int) -> bool:
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            local = line.split()[1]
            if int(local.split(":")[1], 16) == port:
                return True
    return False


@contextlib.contextmanager
def running(sipp: Sipp) -> Iterator[Sipp]:
    sipp.start()
    try:
        yield sipp
    finally:
        sipp.stop()
