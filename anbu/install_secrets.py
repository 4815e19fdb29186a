"""Fresh secrets for an installation (``anbu secrets``): every secret production requires,
as environment lines for the service's env file (``anbu secrets > /etc/anbu/secrets.env``,
mode 600). Generated once at install, never defaults: production refuses to start with the
development values."""

from __future__ import annotations

import os
import secrets

from pydantic import SecretStr

from anbu.settings import Settings

# Each 32 random bytes, URL-safe (the callback token travels in Kannel's URLs; the others sit
# in quoted Kannel/Asterisk config values, where URL-safe characters need no escaping).
SECRET_NAMES = (
    "ANBU_ESCALATION__CALLBACK_TOKEN",
    "ANBU_ENGINE__AMI_SECRET",
    "ANBU_SMS__KANNEL_PASSWORD",
    "ANBU_SMS__KANNEL_ADMIN_PASSWORD",
    "ANBU_MQTT__PASSWORD",
)


def generate() -> dict[str, str]:
    return {name: secrets.token_urlsafe(32) for name in SECRET_NAMES}


def env_lines(values: dict[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in values.items()) + (
        "# also set ANBU_MQTT__USERNAME (this process's broker user); create API keys with "
        "`anbu key create` (no bootstrap key in production)\n"
    )


def with_local_callback_token(settings: Settings) -> Settings:
    """``make run``'s stack: without a configured callback token, one generated at the first
    run and kept in ``<var_dir>/callback-token`` (mode 600), so Kannel's callbacks are
    authenticated in development too and the rendered Kannel config stays the same across runs."""
    if settings.escalation.callback_token is not None:
        return settings
    path = settings.var_dir / "callback-token"
    if path.exists():
        token = path.read_text().strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    escalation = settings.escalation.model_copy(update={"callback_token": SecretStr(token)})
    return settings.model_copy(update={"escalation": escalation})
