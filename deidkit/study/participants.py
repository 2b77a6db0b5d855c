"""Participant ids and where their files live: which ids are valid (real participants vs. simulated ones,
whose ids start with ``sim-``), and the layout of a study's ``responses/`` folder (one
``<participant>.jsonl`` per participant, their locks under ``.locks/``). The writer, the reader and the
simulated participants all name files through this module, so they agree on them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PARTICIPANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SIM_PREFIX = "sim-"
LOCK_DIR = ".locks"


class InvalidParticipantId(ValueError):
    """A participant id that cannot be used as a file name."""


def normalize_participant_id(participant: str, simulated: bool = False) -> str:
    """Check and normalise a participant id: lower case (so ``P01`` and ``p01`` are one participant on every
    file system), letters, digits, ``-`` and ``_``, at most 64 characters. Ids starting with ``sim-`` are
    reserved for simulated participants, and simulated participants must use them."""
    pid = str(participant).strip().lower()
    if not PARTICIPANT_RE.fullmatch(pid):
        raise InvalidParticipantId(
            f"participant id {participant!r} is not valid: use 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    if simulated and not pid.startswith(SIM_PREFIX):
        raise InvalidParticipantId(f"simulated participant ids must start with {SIM_PREFIX!r}, got {pid!r}")
    if not simulated and pid.startswith(SIM_PREFIX):
        raise InvalidParticipantId(f"participant ids starting with {SIM_PREFIX!r} are reserved for simulations")
    return pid


def participant_file(responses_dir: str | os.PathLike, participant: str) -> Path:
    """The response file of ``participant`` in ``responses_dir``."""
    return Path(responses_dir) / f"{participant}.jsonl"
