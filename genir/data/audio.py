"""Waveform files: 16 kHz mono 16-bit PCM WAV read and written with the standard ``wave`` module and numpy.

One format for every clip of the speech-and-sound benchmark (the rate Whisper's feature extractor expects), so a
reader never resamples: a file in another format is an error naming the file and the format found. The external
programs that make the clips (``espeak-ng`` for voices, ``sox`` for conversion, effects and synthetic sounds) are
looked up here too, with one error naming the missing program and how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from genir.errors import DatasetError

SAMPLE_RATE = 16000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
INSTALL_HINT = "apt-get install espeak-ng sox libsox-fmt-base"


def load_wav(path: str | Path) -> np.ndarray:
    """The samples of a 16 kHz mono 16-bit PCM WAV as float32 in [-1, 1], shape (T,). DatasetError naming the file
    when it is missing, not a WAV, truncated, or in another format (found vs expected rate, channels, width)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with wave.open(str(path), "rb") as f:
            rate, channels, width, frames = f.getframerate(), f.getnchannels(), f.getsampwidth(), f.getnframes()
            found = (rate, channels, width)
            if found != (SAMPLE_RATE, CHANNELS, SAMPLE_WIDTH):
                raise DatasetError(f"{path}: expected a {SAMPLE_RATE} Hz, {CHANNELS}-channel, {8 * SAMPLE_WIDTH}-bit "
                                   f"PCM WAV, found {rate} Hz, {channels} channel(s), {8 * width}-bit")
            raw = f.readframes(frames)
    except (wave.Error, EOFError, OSError) as e:
        raise DatasetError(f"{path}: not a readable WAV file ({e})") from e
    if len(raw) != frames * SAMPLE_WIDTH:
        raise DatasetError(f"{path}: truncated WAV, header says {frames} frames, data holds "
                           f"{len(raw) // SAMPLE_WIDTH}")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: str | Path, samples: np.ndarray) -> None:
    """Write float samples in [-1, 1] (clipped) as a 16 kHz mono 16-bit PCM WAV."""
    pcm = np.round(np.clip(np.asarray(samples, dtype=np.float64), -1.0, 32767 / 32768) * 32768).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(CHANNELS)
        f.setsampwidth(SAMPLE_WIDTH)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())


def require_programs(*names: str) -> dict[str, str]:
    """Absolute path of each program; DatasetError naming the missing ones and the install command otherwise."""
    found = {n: shutil.which(n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise DatasetError(f"program(s) {', '.join(missing)} not found on PATH; the speech-events benchmark needs "
                           f"them to synthesize and convert audio (Debian/Ubuntu: `{INSTALL_HINT}`; macOS: "
                           "`brew install espeak-ng sox`)")
    return found


def run_tool(args: list[str]) -> None:
    """Run an audio program; a failure is a DatasetError with the command line and the program's message."""
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DatasetError(f"`{' '.join(map(str, args))}` failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def sox_convert(src: str | Path, dst: str | Path, effects: list[str] = ()) -> None:
    """``src`` (any format sox reads) to a 16 kHz mono 16-bit WAV at ``dst`` after the sox ``effects``."""
    run_tool(["sox", str(src), "-r", str(SAMPLE_RATE), "-c", str(CHANNELS), "-b", str(8 * SAMPLE_WIDTH),
              "-e", "signed-integer", str(dst), *map(str, effects)])
