"""Starting runs from sync web views (Flask, Django) and re-attaching to them by run id.

- :mod:`.runs`: what a view does, with no web framework: start a run and answer at once
  with its id; later, from any process, look the run up by id
  (``runtime.get_handler(run_id)``).
- :mod:`.flask_app`: a Flask app factory over those two (``pip install flask``).
- :mod:`.django_views`: Django views and URL patterns over them (``pip install django``).

The package imports neither framework: neither is a dependency of celery_workflows.
"""
