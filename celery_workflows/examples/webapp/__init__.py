"""A web app that starts workflow runs on Celery workers and streams their progress.

Two pieces, each a module:

- :mod:`~celery_workflows.examples.webapp.proj`: the Celery app, the runtime and the
  ``report`` workflow. Workers run ``celery -A celery_workflows.examples.webapp.proj worker``.
- :mod:`~celery_workflows.examples.webapp.app`: a Starlette app that mounts
  :class:`~celery_workflows.server.WorkflowServer` at ``/api``,
  ``python -m celery_workflows.examples.webapp.app --host 0.0.0.0 --port 8000``.

This package imports neither on purpose: importing ``proj`` builds a Celery app and a
run store, which nothing should pay for by importing the package.
"""
