"""Risk signals at the edge: ingestion, the device registry, evaluation, the sweep, MQTT.

The rules themselves are pure and live in :mod:`anbu.domain.risk`.
"""
