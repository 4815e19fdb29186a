"""Application services: use cases over the database, called by the API, CLI and scheduler."""
