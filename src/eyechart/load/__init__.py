"""Load testing: Locust users, arrival schedules, metrics, gates and reports for ``eyechart load``."""
