"""The import pipeline's stages as plain, synchronous use cases.

Consumers (the faust worker) call :meth:`Pipeline.annotate` and :meth:`Pipeline.persist` with
the raw bytes of an event, under :class:`StageGuard` (the error model: retry infrastructure,
bound attempts, park what cannot even be failed), and publish what they return. Bad input
never raises: it becomes a FAILED import job, a folder in ANALYSES_FAILED with ``error.json``
and a dead-letter message.
"""

from engine.pipeline.guard import Outgoing, StageGuard, StageHandler
from engine.pipeline.stages import Pipeline

__all__ = ["Outgoing", "Pipeline", "StageGuard", "StageHandler"]
