"""Gene panels: reading ELLA's panel folders (``read``) and storing them (``store``)."""

from engine.deposit.genepanel.read import (
    DEMO_GENEPANELS_DIR,
    GenepanelData,
    PhenotypeRow,
    TranscriptRow,
    read_genepanel_folder,
    read_phenotypes,
    read_transcripts,
    split_panel_name,
    transcript_type,
)
from engine.deposit.genepanel.store import (
    DepositResult,
    deposit_genepanel,
    genepanel_exists,
    missing_genepanel_message,
    require_genepanel,
)

__all__ = [
    "DEMO_GENEPANELS_DIR",
    "DepositResult",
    "GenepanelData",
    "PhenotypeRow",
    "TranscriptRow",
    "deposit_genepanel",
    "genepanel_exists",
    "missing_genepanel_message",
    "read_genepanel_folder",
    "read_phenotypes",
    "read_transcripts",
    "require_genepanel",
    "split_panel_name",
    "transcript_type",
]
