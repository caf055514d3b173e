"""The vocabulary of the speech-and-sound event benchmark: its tasks and event types, manifest format and
decoder labels (Double Mixture, Kang et al. 2024).

Shared by the reader (:mod:`genir.data.speech_events`, which re-exports every name here) and the generator
(:mod:`genir.data.speech_events_build`). The decoder label of a row is :func:`target_text`: the transcript, then
``<event>`` and each event type (speech type first for a mixed row); :func:`parse_event_output` inverts it for
evaluation. Sound rows have the transcript ``none``, as the paper's ESC-50 rows.
"""

from __future__ import annotations

import re

EVENT_TOKEN = "<event>"
NO_TRANSCRIPT = "none"
MANIFEST_NAME = "manifest.tsv"
MANIFEST_COLUMNS = ("wav", "transcript", "task", "event_type", "split", "kind")
SPLITS = ("train", "dev", "test")
KINDS = ("speech", "sound", "join", "overlay")
MIXED_KINDS = ("join", "overlay")
MAX_SECONDS = 8.0
SILENCE_PEAK = 1e-3  # about -60 dBFS: below it a clip carries no audible event

# ACE05-like semantic tasks (7, as the paper's Speech-ACE05); the event types are our own ACE-style sub-types.
SPEECH_TASKS: dict[str, tuple[str, ...]] = {
    "conflict": ("conflict:attack", "conflict:demonstrate", "conflict:surrender"),
    "movement": ("movement:transport", "movement:evacuate", "movement:escape"),
    "transaction": ("transaction:transfer-money", "transaction:transfer-ownership", "transaction:donate"),
    "contact": ("contact:meet", "contact:phone-write", "contact:negotiate"),
    "justice": ("justice:arrest-jail", "justice:trial-hearing", "justice:sentence", "justice:sue"),
    "personnel": ("personnel:start-position", "personnel:end-position", "personnel:elect", "personnel:nominate"),
    "life": ("life:be-born", "life:marry", "life:injure", "life:die"),
}
# ESC-50's five sound categories (the paper's acoustic tasks), with classes we have recordings (or recipes) for.
SOUND_TASKS: dict[str, tuple[str, ...]] = {
    "animal": ("animal:dog", "animal:cat", "animal:cow", "animal:bird"),
    "nature": ("nature:rain", "nature:water", "nature:wind", "nature:insects"),
    "human": ("human:applause", "human:footsteps", "human:laughter", "human:heartbeat"),
    "domestic": ("domestic:door", "domestic:phone", "domestic:alarm-clock", "domestic:keyboard"),
    "urban": ("urban:engine", "urban:train", "urban:siren", "urban:machinery"),
}
# The paper's combined-benchmark train locales (conflict, nature, movement, scenario, animal, talk, human) with
# its MAVEN tasks replaced by our ACE-like ones: speech and sound tasks interleaved.
DEFAULT_STREAM = ("conflict", "nature", "movement", "animal", "contact", "human", "transaction")
# Its hybrid locales (conflict_nature, movement_nature, scenario_animal, talk_human), likewise.
HYBRID_PAIRS: tuple[tuple[str, str], ...] = (("conflict", "nature"), ("movement", "nature"),
                                             ("contact", "animal"), ("transaction", "human"))

_EVENT_SPLIT = re.compile(r"<\s*event\s*>", re.IGNORECASE)
def normalize_transcript(text: str) -> str:
    """Lower case, punctuation dropped (hyphens and apostrophes become spaces), whitespace collapsed: the form
    the transcripts are stored and scored (WER) in."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split())


def target_text(row) -> str:
    """The decoder label of a manifest row (a mapping or a frame row with ``transcript`` and ``event_type``):
    ``"{transcript} <event> {type}"``, ``"none <event> {type}"`` for a sound, and for a mixed row
    ``"{transcript} <event> {speech type} <event> {sound type}"``."""
    transcript = " ".join(str(row["transcript"]).split()) or NO_TRANSCRIPT
    return " ".join([transcript] + [f"{EVENT_TOKEN} {t}" for t in str(row["event_type"]).split("|")])


def parse_event_output(text: str) -> tuple[str, list[str]]:
    """(transcript, event types) of a generated label: the text before the first ``<event>`` and each non-empty
    piece after one, whitespace collapsed (``<event>`` itself may carry spaces: ``< event >``). No ``<event>``:
    the whole text and an empty list."""
    pieces = _EVENT_SPLIT.split(str(text))
    transcript = " ".join(pieces[0].split())
    types = [" ".join(p.split()) for p in pieces[1:]]
    return transcript, [t for t in types if t]
