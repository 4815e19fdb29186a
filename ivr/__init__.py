"""anbu: ivr."""
