"""The import pipeline's stages as plain, synchronous use cases.

Consumers (the faust worker) call :meth:`Pipeline.annotate` and :meth:`Pipeline.persist` with
the raw bytes of an event and publish what they return. Bad input never raises: it becomes a
FAILED import job, a folder in ANALYSES_FAILED with ``error.json`` and a dead-letter message.
Only transient infrastructure errors (database or broker unreachable) escape, so the adapter
can retry them or fail-stop without acknowledging the event.
"""

from engine.pipeline.stages import Outgoing, Pipeline, is_transient

__all__ = ["Outgoing", "Pipeline", "is_transient"]
