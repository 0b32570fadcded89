"""The monitoring-quality scorecard: clean traffic and injected faults against the shipped alert rules."""
