"""Import every room's models so Base.metadata is complete (Alembic, tests, create_all)."""

from anbu.db import (
    models,  # noqa: F401
    models_audit,  # noqa: F401
    models_console,  # noqa: F401
    models_escalation,  # noqa: F401
    models_feedback,  # noqa: F401
    models_scheduling,  # noqa: F401
    models_signals,  # noqa: F401
    models_voice,  # noqa: F401
    models_webhooks,  # noqa: F401
)
