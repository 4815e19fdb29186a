"""Import every room's models so Base.metadata is complete (Alembic, tests, create_all)."""

from anbu.db import models  # noqa: F401
