"""anbu: escalation."""
