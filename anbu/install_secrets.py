"""Fresh secrets for an installation (``anbu secrets``): every secret production requires,
as environment lines for the service's env file (``anbu secrets > /etc/anbu/secrets.env``,
mode 600). Generated once at install, never defaults: production refuses to start with the
development values."""

from __future__ import annotations

import secrets

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
