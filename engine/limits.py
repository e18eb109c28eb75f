"""Bounds on hostile input, shared by every reader of analysis files.

The values come from Settings (``ANNOSTREAM_MAX_VCF_BYTES``, ``ANNOSTREAM_MAX_LINE_BYTES``,
``ANNOSTREAM_MAX_SAMPLES``); each process applies them once with :func:`configure_limits`
(the worker's pipeline does at start), so the low-level readers need no settings argument.
A breach is a :class:`engine.errors.LimitExceeded` naming the file and the setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Settings
from engine.errors import LimitExceeded


@dataclass
class InputLimits:
    max_vcf_bytes: int = 20 * 2**30  # decompressed: a gzip bomb stops here
    max_line_bytes: int = 16 * 2**20  # one line is held in memory at a time
    max_samples: int = 1000


LIMITS = InputLimits()


def configure_limits(settings: Settings) -> None:
    LIMITS.max_vcf_bytes = settings.max_vcf_bytes
    LIMITS.max_line_bytes = settings.max_line_bytes
    LIMITS.max_samples = settings.max_samples


def line_too_long(file: str, line: int | None) -> LimitExceeded:
    limit = LIMITS.max_line_bytes
    return LimitExceeded(
        "line is too long",
        file=file,
        line=line,
        expected=f"lines of at most {limit} bytes (ANNOSTREAM_MAX_LINE_BYTES)",
    )


def file_too_large(file: str) -> LimitExceeded:
    return LimitExceeded(
        "decompressed VCF is too large",
        file=file,
        expected=f"at most {LIMITS.max_vcf_bytes} bytes (ANNOSTREAM_MAX_VCF_BYTES)",
    )
