"""All configuration, from environment variables prefixed ``ANBU_`` (nested with ``__``).

Example: ``ANBU_TRUNK__HOST=10.0.0.5``, ``ANBU_DATABASE_URL=postgresql+asyncpg://...``.
"""

from __future__ import annotations

import enum
import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("ANBU_CACHE", str(Path.home() / ".cache" / "anbu")))


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class TrunkSettings(BaseModel):
    """The engine's outbound SIP trunk. Defaults point at the local carrier stand-in."""

    host: str = "127.0.0.1"
    port: int = 15062
    transport: str = "udp"
    username: str | None = None
    password: SecretStr | None = None
    codecs: str = "ulaw,alaw"
    # How long a call may ring before we call it "no answer" (Originate Timeout).
    ring_timeout_s: float = 30.0


class AsteriskSettings(BaseModel):
    """One Asterisk instance (engine or carrier) managed by anbu."""

    sip_port: int
    ami_port: int
    rtp_start: int
    rtp_end: int
    ami_user: str = "anbu"
    ami_secret: SecretStr = SecretStr("anbu-dev-secret")


class SmsSettings(BaseModel):
    provider: str = "kannel"
    fallback_provider: str | None = None
    sender: str = "0212345678"  # must be pre-registered with a Korean provider (발신번호)
    kannel_url: str = "http://127.0.0.1:14013/cgi-bin/sendsms"
    kannel_user: str = "anbu"
    kannel_password: SecretStr = SecretStr("anbu-dev-sms")
    solapi_url: str = "https://api.solapi.com"
    solapi_key: SecretStr | None = None
    solapi_secret: SecretStr | None = None
    webhook_url: str | None = None


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
    public_url: str = "http://127.0.0.1:8080"
    # Bootstrap API key (development only): belongs to every district.
    bootstrap_api_key: SecretStr | None = SecretStr("dev-key")

    agi_host: str = "127.0.0.1"
    agi_port: int = 14573
    engine: AsteriskSettings = AsteriskSettings(
        sip_port=15060, ami_port=15038, rtp_start=20000, rtp_end=20999
    )
    carrier: AsteriskSettings = AsteriskSettings(
        sip_port=15062, ami_port=15039, rtp_start=21000, rtp_end=21999
    )
    trunk: TrunkSettings = TrunkSettings()
    sms: SmsSettings = SmsSettings()
    max_concurrent_calls: int = Field(default=50, ge=1)
    # Seconds to wait for a key after the question before repeating it.
    reply_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            defaults = {
                "ANBU_ENGINE__AMI_SECRET": self.engine.ami_secret.get_secret_value()
                == "anbu-dev-secret",
                "ANBU_SMS__KANNEL_PASSWORD": self.sms.kannel_password.get_secret_value()
                == "anbu-dev-sms",
                "ANBU_BOOTSTRAP_API_KEY": self.bootstrap_api_key is not None,
            }
            bad = [name for name, is_default in defaults.items() if is_default]
            if bad:
                raise ValueError(
                    f"set real secrets in production (defaults left in {', '.join(bad)})"
                )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
