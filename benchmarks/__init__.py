"""Speed and memory figures, printed by scripts run on demand (``python -m benchmarks.NAME``)."""
