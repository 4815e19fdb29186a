"""anbu: scheduler."""
