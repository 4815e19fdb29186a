"""HTTP API (FastAPI). Routes stay thin: validation and translation only."""
