"""The one INFO column parser and writer.

``parse_info`` reads INFO as written: key -> raw value text, a flag -> True. An empty item
(``DP=3;;AF=0.5``, or a trailing ``;``) carries no key and is skipped: the VCF specification has no
empty INFO item, htslib drops it when it writes the record, and keeping it as a key ``""`` made
the annotator write it back while the importer ignored it (the two parsers disagreed). So a line
the annotator rewrites loses its empty items, exactly as ``bcftools`` output would.
"""

from __future__ import annotations

InfoDict = dict[str, str | bool]


def parse_info(info: str) -> InfoDict:
    """``'DP=3;DB;AF=0.5'`` -> ``{'DP': '3', 'DB': True, 'AF': '0.5'}``; ``'.'`` -> ``{}``."""
    result: InfoDict = {}
    if info in (".", ""):
        return result
    for item in info.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        result[key] = value if sep else True
    return result


def render_info(info: InfoDict) -> str:
    """The INFO column of ``info`` (``'.'`` when empty); a False value is left out."""
    if not info:
        return "."
    return ";".join(
        key if value is True else f"{key}={value}" for key, value in info.items() if value is not False
    )
