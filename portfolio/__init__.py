"""The portfolio's own logic: registry, coupled problem, decomposition (later issues)."""
