"""``python -m celery_workflows.store.sql upgrade|downgrade|current URL [REVISION]``."""

from __future__ import annotations

import sys

from celery_workflows.store.sql.migrate import main

sys.exit(main())
