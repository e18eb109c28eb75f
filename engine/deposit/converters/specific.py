"""ELLA's source-specific converters: ClinVar JSON, HGMD and the reference converters.

References all have ELLA's shape ``{"pubmed_id": int, "source": str, "source_info": str}`` and
are meant for ``target: references`` with ``target_mode: extend``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft7Validator

from engine.deposit.converters.base import Converter, Options, RawValue
from engine.deposit.converters.generic import ENCODINGS, JSONConverter

log = logging.getLogger(__name__)

# ClinVar JSON as produced by older ella-anno releases ("v1"): lists per RCV that ELLA flattens.
_CLINVAR_V1_INCOMING = Draft7Validator(
    {
        "type": "object",
        "required": ["variant_description", "variant_id", "rcvs"],
        "properties": {
            "variant_description": {"type": "string"},
            "variant_id": {"type": "integer"},
            "rcvs": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": [
                        "traitnames",
                        "clinical_significance_descr",
                        "variant_id",
                        "submitter",
                        "last_evaluated",
                    ],
                    "properties": {
                        key: {"type": "array", "items": {"type": "string"}}
                        for key in ("traitnames", "clinical_significance_descr", "variant_id", "submitter")
                    },
                },
            },
        },
    }
)
_CLINVAR_RCV_FIELDS = (
    "traitnames",
    "clinical_significance_descr",
    "variant_id",
    "submitter",
    "last_evaluated",
)


def _join(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def flatten_clinvar_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Older ClinVar JSON (lists per RCV) into the ``clinvar_v1`` schema shape ELLA stores."""
    items = []
    for rcv, fields in data["rcvs"].items():
        item = {key: _join(fields[key]) for key in _CLINVAR_RCV_FIELDS}
        item["rcv"] = rcv
        items.append(item)
    return {
        "variant_description": data["variant_description"],
        "variant_id": data["variant_id"],
        "items": items,
    }


class ClinVarJSONConverter(JSONConverter):
    """ClinVar JSON from ella-anno; the older list-per-RCV layout is flattened as ELLA does."""

    name = "clinvarjson"

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        data = super().convert(value, additional)
        if _CLINVAR_V1_INCOMING.is_valid(data):
            return flatten_clinvar_v1(data)
        return data


# HGMD text escapes characters that are special in VCF.
_HGMD_ESCAPES = (("@#EQ", "="), ("@#CM", ","), ("@#SC", ";"), ("@#SP", " "), ("@#TA", "\t"))


def unescape_hgmd(text: str) -> str:
    if "@#" not in text:
        return text
    for escaped, original in _HGMD_ESCAPES:
        text = text.replace(escaped, original)
    return text


def _text(value: RawValue | None) -> str | None:
    return value if isinstance(value, str) else None


class HGMDConverter(Converter):
    """``external.HGMD``: accession from ``source``; disease, tag (and codon, transcript when
    listed) from ``additional_sources`` named ``HGMD__<key>``."""

    name = "hgmd"
    OPTIONAL_KEYS = ("codon", "transcript")

    def configure(self, opts: Options) -> None:
        additional = opts.raw.get("additional_sources") or []
        by_key = {str(name).rsplit("__", 1)[-1]: name for name in additional}
        missing = [key for key in ("disease", "tag") if key not in by_key]
        if missing:
            raise self.context.config_error(
                f"additional_sources lacks {', '.join('HGMD__' + key for key in missing)}",
                expected="additional_sources naming the HGMD disease and tag fields",
            )
        self.disease_field = by_key["disease"]
        self.tag_field = by_key["tag"]
        self.optional_fields = {key: by_key[key] for key in self.OPTIONAL_KEYS if key in by_key}

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        tag = _text(additional.get(self.tag_field))
        disease = _text(additional.get(self.disease_field))
        if not isinstance(value, str) or tag is None or disease is None:
            log.debug("%s: HGMD accession without tag/disease; skipped", self.context.describe())
            return None
        result: dict[str, Any] = {"acc_num": value, "disease": unescape_hgmd(disease), "tag": tag}
        codon = _text(additional.get(self.optional_fields.get("codon", "")))
        if codon and codon.isdigit():
            result["codon"] = int(codon)
        transcript = _text(additional.get(self.optional_fields.get("transcript", "")))
        if transcript:
            result["transcript"] = transcript
        return result


def _pubmed_id(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class HGMDPrimaryReportConverter(Converter):
    """The primary HGMD literature report (``HGMD__pmid``), commented by ``HGMD__comments``."""

    name = "hgmdprimaryreport"

    def configure(self, opts: Options) -> None:
        additional = opts.raw.get("additional_sources") or []
        self.comments_field = next((name for name in additional if str(name).endswith("comments")), None)

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        pmid = _pubmed_id(value) if isinstance(value, str) else None
        if pmid is None:
            log.warning("%s: pubmed id %r is not an integer; skipped", self.context.describe(), value)
            return []
        comments = _text(additional.get(self.comments_field)) if self.comments_field else None
        if not comments or comments == "None":
            comments = "No comments."
        info = f"Primary literature report. {unescape_hgmd(comments)}"
        return [{"pubmed_id": pmid, "source": "HGMD", "source_info": info}]


HGMD_REFTAGS = {
    "APR": "Additional phenotype",
    "FCR": "Functional characterisation",
    "MCR": "Molecular characterisation",
    "SAR": "Additional report",
}
_EXTRAREFS_FORMAT = re.compile(r"Format: \((.*?)\)")


class HGMDExtraRefsConverter(Converter):
    """HGMD's additional references; field names come from the header ``Format: (a|b|...)``."""

    name = "hgmdextrarefs"
    needs_header = True

    def bind(self, header: Mapping[str, str] | None) -> Converter | None:
        if header is None:
            return None
        found = _EXTRAREFS_FORMAT.findall(header.get("Description", ""))
        if not found:
            raise self.context.config_error(
                f"INFO header Description {header.get('Description', '')!r} has no 'Format: (...)'",
                expected="Format: (pmid|...|reftag|...|comments)",
            )
        self.keys = found[0].split("|")
        return self

    def _reference(self, raw: str) -> dict[str, Any] | None:
        fields = dict(zip(self.keys, raw.split("|"), strict=False))
        pmid = _pubmed_id(fields.get("pmid", ""))
        if pmid is None:
            log.warning(
                "%s: pubmed id %r is not an integer; skipped", self.context.describe(), fields.get("pmid")
            )
            return None
        reftag = fields.get("reftag")
        label = HGMD_REFTAGS.get(reftag or "", "Reftag not specified")
        comments = fields.get("comments") or "No comments."
        if reftag == "APR" and comments == "No comments.":
            comments = fields.get("disease") or comments  # the comment on APR is the phenotype
        return {"pubmed_id": pmid, "source": "HGMD", "source_info": f"{label}. {unescape_hgmd(comments)}"}

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        if not isinstance(value, str):
            return []
        references = (self._reference(raw) for raw in value.split(","))
        return [reference for reference in references if reference is not None]


class ClinVarReferencesConverter(Converter):
    """Pubmed ids listed in the ClinVar JSON (``pubmeds`` and ``pubmed_ids``)."""

    name = "clinvarreferences"
    options = frozenset({"encoding"})

    def configure(self, opts: Options) -> None:
        self.encoding = opts.choice("encoding", ENCODINGS, "base16")
        self.json = JSONConverter({"source": self.source, "encoding": self.encoding}, self.context)

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        data = self.json.load(value)
        if not isinstance(data, dict):
            return []
        pubmeds = list(data.get("pubmeds") or []) + list(data.get("pubmed_ids") or [])
        references = []
        for pmid in pubmeds:
            number = _pubmed_id(str(pmid))
            if number is None:
                log.warning("%s: pubmed id %r is not an integer; skipped", self.context.describe(), pmid)
                continue
            references.append({"pubmed_id": number, "source": "CLINVAR", "source_info": ""})
        return references


__all__ = [
    "ClinVarJSONConverter",
    "ClinVarReferencesConverter",
    "HGMDConverter",
    "HGMDExtraRefsConverter",
    "HGMDPrimaryReportConverter",
    "unescape_hgmd",
]
