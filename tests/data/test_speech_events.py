"""Speech-events benchmark: the reader (on a manifest and numpy-made wavs written by the test), the wav format
checks, the decoder labels and their parser, and a tiny real build (espeak-ng + sox)."""

from __future__ import annotations

import json
import shutil
import warnings
import wave

import numpy as np
import pytest

from genir.data import audio
from genir.data.audio import load_wav, write_wav
from genir.data.speech_events import (
    EVENT_TOKEN,
    HYBRID_PAIRS,
    MANIFEST_COLUMNS,
    SOUND_TASKS,
    SPEECH_TASKS,
    build_speech_events,
    normalize_transcript,
    parse_event_output,
    read_speech_events,
    target_text,
)
from genir.errors import DatasetError


def _tone(seconds=0.5, amp=0.3, freq=440.0):
    t = np.arange(int(16000 * seconds)) / 16000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_manifest(root, rows, header=MANIFEST_COLUMNS):
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    (root / "manifest.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toy(tmp_path):
    (tmp_path / "clips").mkdir()
    rows = []
    for i in range(4):
        write_wav(tmp_path / f"clips/s{i}.wav", _tone(1.0 + i * 0.5))
        rows.append((f"clips/s{i}.wav", f"troops attacked the town {i}", "conflict", "conflict:attack",
                     ("train", "train", "dev", "test")[i], "speech"))
    write_wav(tmp_path / "clips/rain.wav", _tone(0.25, freq=1000))
    rows.append(("clips/rain.wav", "none", "nature", "nature:rain", "train", "sound"))
    write_wav(tmp_path / "clips/mix.wav", _tone(2.0))
    rows.append(("clips/mix.wav", "troops attacked", "conflict+nature", "conflict:attack|nature:rain", "test",
                 "overlay"))
    (tmp_path / "clips/corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    rows.append(("clips/corrupt.wav", "none", "nature", "nature:rain", "train", "sound"))
    write_wav(tmp_path / "clips/silent.wav", np.zeros(8000, np.float32))
    rows.append(("clips/silent.wav", "none", "nature", "nature:rain", "train", "sound"))
    write_wav(tmp_path / "clips/silent2.wav", np.full(8000, 1e-5, np.float32))
    rows.append(("clips/silent2.wav", "he left", "movement", "movement:escape", "train", "speech"))
    rows.append(("clips/gone.wav", "he left", "movement", "movement:escape", "train", "speech"))
    write_wav(tmp_path / "clips/notext.wav", _tone(1.0))
    rows.append(("clips/notext.wav", "  ", "movement", "movement:escape", "train", "speech"))
    rows.append(("clips/notext.wav", "", "conflict+nature", "conflict:attack|nature:rain", "train", "join"))
    _write_manifest(tmp_path, rows)
    return tmp_path


def test_reader_keeps_good_rows_and_counts_each_skip(tmp_path):
    root = _toy(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_speech_events(root)
    assert data.report == {"rows": 12, "clips": 6, "missing_wav": 1, "unreadable_wav": 1, "silent_wav": 2,
                           "empty_transcript": 2}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4
    assert any("1 row(s) with a missing wav (e.g. clips/gone.wav)" in m for m in messages)
    assert any("1 row(s) with an unreadable or corrupt wav (e.g. clips/corrupt.wav)" in m for m in messages)
    assert any("2 row(s) with a silent wav" in m for m in messages)
    assert any("2 row(s) with an empty transcript (e.g. line 12)" in m for m in messages)
    clips = data.clips
    assert list(clips.columns) == ["clip_id", "path", "transcript", "task", "event_type", "split", "kind",
                                   "duration_s"]
    assert clips["clip_id"].tolist()[:2] == ["clips/s0", "clips/s1"]
    assert clips["duration_s"].tolist() == [1.0, 1.5, 2.0, 2.5, 0.25, 2.0]
    assert clips["path"].iloc[0] == str((root / "clips/s0.wav").resolve())
    assert data.tasks == ["conflict", "nature", "conflict+nature"]
    assert len(data.by_task("conflict", "train")) == 2
    assert data.mixed("test")["event_type"].tolist() == ["conflict:attack|nature:rain"]
    assert [t for t, _ in data.stream_tasks(("nature", "conflict"))] == ["nature", "conflict"]
    with pytest.raises(DatasetError, match="task 'movement' has no train clips"):
        data.stream_tasks(("movement",))


def test_wrong_columns_unknown_split_or_kind_and_missing_folder_are_errors(tmp_path):
    root = _toy(tmp_path)
    _write_manifest(root, [("clips/s0.wav", "a", "conflict", "conflict:attack", "train")],
                    header=("wav", "text", "task", "event_type", "split"))
    with pytest.raises(DatasetError, match=r"manifest.tsv: expected the tab-separated columns \['wav', "
                                           r"'transcript'.*found \['wav', 'text'"):
        read_speech_events(root)
    _write_manifest(root, [("clips/s0.wav", "a", "conflict", "conflict:attack", "valid", "speech")])
    with pytest.raises(DatasetError, match=r"manifest.tsv: line 2: unknown split 'valid'"):
        read_speech_events(root)
    _write_manifest(root, [("clips/s0.wav", "a", "conflict", "conflict:attack", "train", "speech"),
                           ("clips/s0.wav", "a", "conflict", "conflict:attack", "train", "music")])
    with pytest.raises(DatasetError, match=r"manifest.tsv: line 3: unknown kind 'music'"):
        read_speech_events(root)
    with pytest.raises(DatasetError, match="nowhere: speech-events folder not found"):
        read_speech_events(root / "nowhere")
    (root / "manifest.tsv").unlink()
    with pytest.raises(DatasetError, match="manifest.tsv: manifest not found"):
        read_speech_events(root)


def test_load_wav_round_trip_and_format_errors(tmp_path):
    x = _tone(0.1)
    write_wav(tmp_path / "a.wav", x)
    y = load_wav(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == x.shape and np.abs(y - x).max() < 1e-4
    for name, (rate, channels, width), found in [("r.wav", (22050, 1, 2), "22050 Hz, 1 channel"),
                                                 ("c.wav", (16000, 2, 2), "16000 Hz, 2 channel"),
                                                 ("w.wav", (16000, 1, 1), "8-bit")]:
        with wave.open(str(tmp_path / name), "wb") as f:
            f.setnchannels(channels)
            f.setsampwidth(width)
            f.setframerate(rate)
            f.writeframes(b"\x00" * 400)
        with pytest.raises(DatasetError, match=rf"{name}: expected a 16000 Hz, 1-channel, 16-bit PCM WAV, "
                                               rf"found .*{found}"):
            load_wav(tmp_path / name)
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(DatasetError, match="bad.wav: not a readable WAV"):
        load_wav(tmp_path / "bad.wav")
    with pytest.raises(DatasetError, match="none.wav: file not found"):
        load_wav(tmp_path / "none.wav")


def test_target_text_and_parse_event_output():
    assert EVENT_TOKEN == "<event>"
    speech = {"transcript": "troops attacked the town", "event_type": "conflict:attack"}
    sound = {"transcript": "none", "event_type": "nature:rain"}
    mixed = {"transcript": "troops attacked", "event_type": "conflict:attack|nature:rain"}
    assert target_text(speech) == "troops attacked the town <event> conflict:attack"
    assert target_text(sound) == "none <event> nature:rain"
    assert target_text(mixed) == "troops attacked <event> conflict:attack <event> nature:rain"
    for row in (speech, sound, mixed):
        transcript, types = parse_event_output(target_text(row))
        assert transcript == row["transcript"] and types == row["event_type"].split("|")
    assert parse_event_output("  a  b<event>conflict:attack  ") == ("a b", ["conflict:attack"])
    assert parse_event_output("a < event > x:y <event>  <event> z:w") == ("a", ["x:y", "z:w"])
    assert parse_event_output("just words") == ("just words", [])
    assert parse_event_output("<event> life:die") == ("", ["life:die"])
    assert parse_event_output("") == ("", [])
    assert normalize_transcript("The Minister's car, at 9-30!") == "the minister s car at 9 30"


def test_task_tables_have_the_promised_shape():
    assert len(SPEECH_TASKS) == 7 and len(SOUND_TASKS) == 5
    assert all(3 <= len(v) <= 5 and all(t.startswith(k + ":") for t in v) for k, v in SPEECH_TASKS.items())
    assert all(3 <= len(v) <= 4 and all(t.startswith(k + ":") for t in v) for k, v in SOUND_TASKS.items())
    assert all(a in SPEECH_TASKS and b in SOUND_TASKS for a, b in HYBRID_PAIRS)


def test_missing_programs_are_named_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None if name == "espeak-ng" else "/usr/bin/" + name)
    with pytest.raises(DatasetError, match=r"program\(s\) espeak-ng not found.*apt-get install espeak-ng sox "
                                           r"libsox-fmt-base"):
        build_speech_events(tmp_path / "bench")
    assert not (tmp_path / "bench").exists()


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_tiny_build_is_complete_readable_and_seeded(tmp_path):
    a = build_speech_events(tmp_path / "a", seed=3, per_task=2, voices=("en-us",))
    b = build_speech_events(tmp_path / "b", seed=3, per_task=2, voices=("en-us",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left behind
    manifest = (a / "manifest.tsv").read_text()
    assert manifest.splitlines()[0].split("\t") == list(MANIFEST_COLUMNS)
    assert manifest == (b / "manifest.tsv").read_text()
    first_mixed = next(line.split("\t")[0] for line in manifest.splitlines() if "\tjoin" in line)
    for wav in ("clips/conflict/train/0000.wav", "clips/urban/test/0000.wav", first_mixed):
        assert (a / wav).read_bytes() == (b / wav).read_bytes()
    data = read_speech_events(a)
    clips = data.clips
    assert data.report["clips"] == data.report["rows"] == len(clips) == 7 * 4 + 5 * 4 + 4 * 2 * 2
    assert set(clips["split"]) == {"train", "dev", "test"}
    assert clips.groupby("kind").size().to_dict() == {"join": 8, "overlay": 8, "sound": 20, "speech": 28}
    assert clips["duration_s"].max() <= 8.0
    speech, sound = clips[clips["kind"] == "speech"], clips[clips["kind"] == "sound"]
    assert speech["duration_s"].between(1.0, 5.0).all() and (sound["duration_s"] <= 3.0).all()
    assert (sound["transcript"] == "none").all() and speech["transcript"].str.len().gt(10).all()
    assert speech["transcript"].str.fullmatch(r"[a-z0-9 ]+").all()
    mixed = data.mixed()
    assert set(mixed["task"]) == {f"{s}+{n}" for s, n in HYBRID_PAIRS}
    how = json.loads((a / "build.json").read_text())
    assert how["synthesized_classes"] == ["urban:siren"]
    split_of = dict(zip(clips["clip_id"], clips["split"]))
    for row in mixed.itertuples():  # a mixed row is made of clips of its own split
        made = how["clips"][row.clip_id]
        assert split_of[made["speech"]] == split_of[made["sound"]] == row.split
        speech_row = clips[clips["clip_id"] == made["speech"]].iloc[0]
        assert row.transcript == speech_row["transcript"]
        assert row.event_type.split("|")[0] == speech_row["event_type"]
    assert all(how["clips"][c]["origin"].startswith(("real: ", "synthesized")) for c in sound["clip_id"])
    with pytest.raises(DatasetError, match="already exists"):
        build_speech_events(a, seed=3, per_task=2)
    c = build_speech_events(a, seed=4, per_task=2, voices=("en-gb",), force=True)
    assert (c / "manifest.tsv").read_text() != manifest
