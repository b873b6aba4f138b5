"""A web app that starts workflow runs on Celery workers and streams their progress.

Three pieces, each a module:

- :mod:`~celery_workflows.examples.webapp.proj`: the Celery app, the runtime and the
  ``report`` workflow. Workers run ``celery -A celery_workflows.examples.webapp.proj worker``.
- :mod:`~celery_workflows.examples.webapp.app`: the HTTP front end (standard library only),
  ``python -m celery_workflows.examples.webapp.app --host 0.0.0.0 --port 8000``.

This package imports neither on purpose: importing ``proj`` builds a Celery app and a
run store, which the web app's request handling (and its tests) must not need.
"""
