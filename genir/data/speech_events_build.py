"""Generate the speech-and-sound event benchmark read by :func:`genir.data.speech_events.read_speech_events`.

One seeded pass writes a fresh folder (into a temporary sibling, renamed into place at the end, so no half-built
benchmark is ever left behind):

* **speech** clips - per semantic task and split, event types in rotation, a sentence from
  :mod:`genir.data.speech_sentences` (never repeated within a task, so no transcript is in two splits), spoken
  by espeak-ng with a random voice/variant, speed (140-180 words/min) and pitch (30-70), converted by sox to
  16 kHz mono 16-bit with the silence trimmed, 1.5-5 s (a sentence that comes out longer is redrawn);
* **sound** clips - per sound class, the real recordings of ``recipes/data/sounds`` (``sources.tsv``), each clip
  a random crop (1-3 s) of one of them with a random speed (0.9-1.1, pitch moves with it), level and, for a
  third, reverb; classes with no recording (``SYNTHESIZED``) get sox-synthesized sources first (sirens: wail,
  yelp and hi-lo sweeps), varied the same way. A class with one or two recordings therefore has many variants of
  the same recording, in every split: its test clips are new cuts, not new recordings (ESC-50's folds hold out
  recordings; with one recording per class we cannot);
* **join** / **overlay** rows per hybrid pair (:data:`~genir.data.speech_events.HYBRID_PAIRS`), train and test,
  each from a speech and a sound clip *of the same split* (no leakage): join splices speech, a 0.1-0.5 s gap and
  the sound; overlay mixes the sound under the speech at an SNR drawn from {0, 5, 10} dB.

``build.json`` records the seed, the sizes, and per clip how it was made (voice, speed, pitch; source recording
and its origin, real or synthesized, crop and effects; the two clips and the gap or SNR of a mixed row).

Default size (``per_task=120``): 2,800 clips - per task 120 train / 20 dev / 40 test, per hybrid pair and kind
40 train / 40 test - about 146 minutes of audio (274 MB of WAV), built in about 1.5 minutes on one core;
``per_task=64`` stays under 150 MB. The same seed gives the same manifest and the same bytes (sox runs with
``-R -D``: repeatable random numbers, no dither).
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from genir.atomic import write_json
from genir.data.audio import SAMPLE_RATE, load_wav, require_programs, run_tool, write_wav
from genir.data.speech_event_tasks import (
    HYBRID_PAIRS,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    MAX_SECONDS,
    NO_TRANSCRIPT,
    SOUND_TASKS,
    SPEECH_TASKS,
    normalize_transcript,
)
from genir.data.speech_sentences import make_sentence
from genir.errors import DatasetError

SOUNDS_DIR = Path(__file__).resolve().parents[2] / "recipes" / "data" / "sounds"
VOICES = ("en-us", "en-us+f3", "en-us+m3", "en-gb", "en-gb+f2", "en-gb-scotland", "en-gb-scotland+f4",
          "en-gb-x-rp+m1", "en-029+f3", "en-us+f4")
SYNTHESIZED = ("urban:siren",)
DEFAULT_PER_TASK = 120
SPEECH_SECONDS = (1.5, 5.0)
SOUND_SECONDS = (1.0, 3.0)
SNRS_DB = (0, 5, 10)
SOX = ("sox", "-R", "-D")  # repeatable random numbers, no dither: the same seed gives the same bytes
_PCM = ("-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer")


def split_sizes(per_task: int) -> dict[str, int]:
    """Clips per split of one task, and mixed rows per hybrid pair, kind and split (train and test)."""
    if per_task < 1:
        raise DatasetError(f"per_task must be at least 1, got {per_task}")
    return {"train": per_task, "dev": max(1, round(per_task / 6)), "test": max(1, round(per_task / 3)),
            "mixed": max(1, round(per_task / 3))}


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _speech_clip(event_type: str, used: set[str], rng: random.Random, voices: tuple[str, ...], dst: Path,
                 work: Path) -> dict:
    """Synthesize one sentence of ``event_type`` into ``dst``; returns how (text, voice, speed, pitch)."""
    for attempt in range(30):
        text = make_sentence(event_type, rng)
        if normalize_transcript(text) in used and attempt < 29:
            continue
        voice, speed, pitch = rng.choice(voices), rng.randint(140, 180), rng.randint(30, 70)
        raw = work / "espeak.wav"
        run_tool(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text])
        run_tool([*SOX, str(raw), *_PCM, str(dst), "silence", "1", "0.02", "0.5%", "reverse", "silence", "1",
                  "0.02", "0.5%", "reverse"])
        seconds = load_wav(dst).size / SAMPLE_RATE
        if SPEECH_SECONDS[0] <= seconds <= SPEECH_SECONDS[1] or attempt == 29:
            used.add(normalize_transcript(text))
            return {"text": text, "voice": voice, "speed": speed, "pitch": pitch, "seconds": round(seconds, 3)}
    raise AssertionError("unreachable")


def _read_sources(sounds_dir: Path) -> dict[str, list[dict]]:
    """Real recordings by class from ``sources.tsv``; DatasetError naming it when missing or malformed."""
    table = sounds_dir / "sources.tsv"
    if not table.is_file():
        raise DatasetError(f"{table}: sound sources table not found (re-create it with "
                           "`python recipes/data/sounds/curate.py`)")
    by_class: dict[str, list[dict]] = {}
    with open(table, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if not {"file", "class", "package", "version"} <= set(row):
                raise DatasetError(f"{table}: expected columns file, class, package, version, found {list(row)}")
            path = sounds_dir / row["file"]
            if not path.is_file():
                raise DatasetError(f"{table}: lists {row['file']}, not found in {sounds_dir}")
            by_class.setdefault(row["class"], []).append(
                {"path": path, "source": row["file"], "origin": f"real: {row['package']} {row['version']}"})
    return by_class


def _synthesize_siren(kind: str, rng: random.Random, dst: Path) -> None:
    """A 3 s siren made by sox: ``wail`` (slow up/down sweeps), ``yelp`` (fast sweeps) or ``hilo`` (two
    alternating tones), square-ish (sine + its third harmonic), band-limited, with a little traffic noise."""
    low, high = rng.uniform(550, 750), rng.uniform(1200, 1600)
    if kind == "hilo":
        seg, parts = rng.uniform(0.4, 0.6), [f"{low:.0f}", f"{low * 1.35:.0f}"]
    else:
        seg = rng.uniform(0.9, 1.3) if kind == "wail" else rng.uniform(0.15, 0.25)
        parts = [f"{low:.0f}:{high:.0f}", f"{high:.0f}:{low:.0f}"]
    pieces, t, k = [], 0.0, 0
    while t < 3.0:
        p = dst.with_name(f"{dst.stem}_{k}.wav")
        f = parts[k % 2]
        third = ":".join(str(3 * float(x)) for x in f.split(":"))
        # two channels: the tone and its third harmonic, mixed down below
        run_tool([*SOX, "-n", "-r", str(SAMPLE_RATE), "-c", "2", "-b", "16", str(p), "synth", _fmt(seg), "sine", f,
                  "sine", third])
        pieces.append(p)
        t, k = t + seg, k + 1
    mixed = dst.with_name(f"{dst.stem}_tone.wav")
    run_tool([*SOX, *map(str, pieces), str(mixed), "remix", "1v0.8,2v0.25", "trim", "0", "3"])
    noise = dst.with_name(f"{dst.stem}_noise.wav")
    run_tool([*SOX, "-n", *_PCM, str(noise), "synth", "3", "brownnoise", "vol", _fmt(rng.uniform(0.05, 0.15))])
    run_tool([*SOX, "-m", str(mixed), str(noise), *_PCM, str(dst), "lowpass", "4000", "norm", "-1"])


def _sound_clip(source: dict, rng: random.Random, dst: Path) -> dict:
    """A random crop of ``source`` with a random speed, level and (a third of the time) reverb."""
    total = load_source_seconds(source["path"])
    length = min(total, rng.uniform(*SOUND_SECONDS))
    start = rng.uniform(0.0, total - length)
    speed = rng.uniform(0.9, 1.1)
    level = rng.uniform(-8.0, -1.0)
    effects = ["trim", _fmt(start), _fmt(length), "speed", _fmt(speed)]
    reverb = rng.random() < 1 / 3
    if reverb:
        effects += ["reverb", str(rng.randint(20, 60))]
    if length < 0.5:  # a drip, a click: keep a little room around it
        effects += ["pad", "0.1", "0.3"]
    effects += ["trim", "0", _fmt(SOUND_SECONDS[1]), "norm", _fmt(level)]
    run_tool([*SOX, str(source["path"]), *_PCM, str(dst), *effects])
    return {"source": source["source"], "origin": source["origin"], "start": round(start, 3),
            "length": round(length, 3), "speed": round(speed, 3), "level_db": round(level, 2), "reverb": reverb}


def load_source_seconds(path: Path) -> float:
    """Duration of a source recording (any format sox reads), from ``soxi``."""
    done = subprocess.run(["soxi", "-D", str(path)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DatasetError(f"{path}: sox cannot read it ({done.stderr.strip()})")
    return float(done.stdout)


def _join(speech: np.ndarray, sound: np.ndarray, gap: float) -> np.ndarray:
    room = int(MAX_SECONDS * SAMPLE_RATE) - speech.size - int(gap * SAMPLE_RATE)
    return np.concatenate([speech, np.zeros(int(gap * SAMPLE_RATE), np.float32), sound[:max(room, 0)]])


def _overlay(speech: np.ndarray, sound: np.ndarray, snr_db: float, offset: float) -> np.ndarray:
    """Speech with the sound mixed under it from ``offset`` (a fraction of the room left) at ``snr_db``."""
    p_speech = float(np.mean(speech ** 2))
    p_sound = float(np.mean(sound ** 2)) or 1e-12
    gain = np.sqrt(p_speech / (p_sound * 10 ** (snr_db / 10)))
    out = np.zeros(max(speech.size, sound.size), np.float32)
    out[:speech.size] += speech
    start = int(offset * (out.size - sound.size)) if out.size > sound.size else 0
    out[start:start + sound.size] += gain * sound
    peak = float(np.abs(out).max())
    return out * (0.95 / peak) if peak > 0.95 else out


def build(out_dir: str | Path, *, seed: int = 0, per_task: int | None = None, voices: tuple[str, ...] = VOICES,
          sounds_dir: str | Path | None = None, force: bool = False) -> Path:
    """Generate the benchmark into ``out_dir`` (see the module docstring) and return it. ``per_task``: train
    clips per task (default 120; dev a sixth, test a third, mixed rows a third per pair, kind and split).
    DatasetError when espeak-ng or sox is missing (naming the install command), or ``out_dir`` exists and not
    ``force``."""
    require_programs("espeak-ng", "sox", "soxi")
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise DatasetError(f"{out_dir}: already exists (pass force=True / --force to replace it)")
    sizes = split_sizes(per_task or DEFAULT_PER_TASK)
    sources = _read_sources(Path(sounds_dir) if sounds_dir else SOUNDS_DIR)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _build_into(tmp, seed, sizes, tuple(voices), sources)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _build_into(root: Path, seed: int, sizes: dict[str, int], voices: tuple[str, ...],
                sources: dict[str, list[dict]]) -> None:
    rng = random.Random(seed)
    work = root / ".work"
    work.mkdir()
    rows: list[tuple[str, ...]] = []
    made: dict[str, dict] = {}
    by_split: dict[tuple[str, str], list[tuple[str, str, str]]] = {}  # (task, split) -> [(wav, text, type)]

    def add(wav: str, transcript: str, task: str, event_type: str, split: str, kind: str, how: dict) -> None:
        rows.append((wav, transcript, task, event_type, split, kind))
        made[str(Path(wav).with_suffix(""))] = how
        if kind in ("speech", "sound"):
            by_split.setdefault((task, split), []).append((wav, transcript, event_type))

    for task, types in SPEECH_TASKS.items():
        used: set[str] = set()
        for split in ("train", "dev", "test"):
            (root / "clips" / task / split).mkdir(parents=True)
            order = [types[i % len(types)] for i in range(sizes[split])]
            rng.shuffle(order)
            for i, event_type in enumerate(order):
                wav = f"clips/{task}/{split}/{i:04d}.wav"
                how = _speech_clip(event_type, used, rng, voices, root / wav, work)
                add(wav, normalize_transcript(how["text"]), task, event_type, split, "speech", how)

    synthesized = []
    for task, classes in SOUND_TASKS.items():
        for cls in classes:
            if cls not in sources:
                if cls not in SYNTHESIZED:
                    raise DatasetError(f"no recording and no synthesis recipe for sound class {cls!r}")
                sources[cls] = []
                for k, kind in enumerate(("wail", "yelp", "hilo", "wail")):
                    dst = work / f"{cls.replace(':', '_')}_{k}.wav"
                    _synthesize_siren(kind, rng, dst)
                    sources[cls].append({"path": dst, "source": f"sox {kind} siren #{k}", "origin": "synthesized"})
                synthesized.append(cls)
        for split in ("train", "dev", "test"):
            (root / "clips" / task / split).mkdir(parents=True)
            order = [classes[i % len(classes)] for i in range(sizes[split])]
            rng.shuffle(order)
            turn = {cls: rng.randrange(len(sources[cls])) for cls in classes}
            for i, cls in enumerate(order):
                source = sources[cls][turn[cls] % len(sources[cls])]
                turn[cls] += 1
                wav = f"clips/{task}/{split}/{i:04d}.wav"
                add(wav, NO_TRANSCRIPT, task, cls, split, "sound", _sound_clip(source, rng, root / wav))

    for speech_task, sound_task in HYBRID_PAIRS:
        pair = f"{speech_task}+{sound_task}"
        for kind in ("join", "overlay"):
            for split in ("train", "test"):
                (root / "clips" / kind / pair / split).mkdir(parents=True)
                speech_pool, sound_pool = by_split[(speech_task, split)], by_split[(sound_task, split)]
                for i in range(sizes["mixed"]):
                    s_wav, text, s_type = rng.choice(speech_pool)
                    n_wav, _, n_type = rng.choice(sound_pool)
                    speech, sound = load_wav(root / s_wav), load_wav(root / n_wav)
                    how = {"speech": str(Path(s_wav).with_suffix("")), "sound": str(Path(n_wav).with_suffix(""))}
                    if kind == "join":
                        how["gap"] = round(rng.uniform(0.1, 0.5), 3)
                        mix = _join(speech, sound, how["gap"])
                    else:
                        how["snr_db"], how["offset"] = rng.choice(SNRS_DB), round(rng.random(), 3)
                        mix = _overlay(speech, sound, how["snr_db"], how["offset"])
                    wav = f"clips/{kind}/{pair}/{split}/{i:04d}.wav"
                    write_wav(root / wav, mix)
                    add(wav, text, pair, f"{s_type}|{n_type}", split, kind, how)

    shutil.rmtree(work)
    with open(root / MANIFEST_NAME, "w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(MANIFEST_COLUMNS) + "\n")
        fh.writelines("\t".join(r) + "\n" for r in rows)
    write_json(root / "build.json", {"seed": seed, "sizes": sizes, "voices": list(voices),
                                     "synthesized_classes": synthesized, "clips": made})
