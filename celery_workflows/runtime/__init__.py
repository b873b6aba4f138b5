"""The run lifecycle (``engine``) and the runtimes that drive it."""

from __future__ import annotations
