"""anbu (안부): welfare check-in calls through Asterisk."""

__version__ = "0.1.0"
