"""Runnable examples (``python -m celery_workflows.examples.<name>``)."""
