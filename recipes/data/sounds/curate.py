"""Re-create the real sound recordings of the speech-events benchmark from Debian packages (maintainer script).

``python recipes/data/sounds/curate.py`` downloads the packages below with ``apt-get download`` into a temporary
folder (nothing is installed), takes the listed files out of them (plain files, Qt ``.rcc`` resource archives of
gcompris, OpenTTD's ``opensfx.cat`` sound catalogue), converts each to 16 kHz mono FLAC (silence trimmed, peak
normalised to -1 dB, at most 6 s) and writes ``sources.tsv`` and ``SOURCES.md`` beside this script, with each
file's package, version, path inside the package and licence (the most specific ``Files:`` stanza of the package's
``debian/copyright``). Two classes are assembled from single real hits: footsteps (one recorded step, repeated with
varied gaps and gains) and keyboard typing (bucklespring's recorded key presses and releases). Classes with no
recording in Debian (``SYNTHESIZED``) are made by sox in :mod:`genir.data.speech_events_build` instead.
Needs apt-get, dpkg-deb and sox (Debian bookworm).
"""

from __future__ import annotations

import fnmatch
import random
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_SECONDS = 6.0

GC_RCC = "usr/share/gcompris-qt/rcc/"
GC = "gcompris/src/activities/"
TP = "usr/share/tuxpaint/stamps/"
OPENSFX = "usr/share/games/openttd/baseset/opensfx/opensfx.cat"
FD = "usr/share/sounds/freedesktop/stereo/"

# class -> [(package, path inside the package, member inside an archive file or None)]
SOURCES: dict[str, list[tuple[str, str, str | None]]] = {
    "animal:dog": [("gcompris-qt-data", GC_RCC + "explore_farm_animals.rcc", GC + "explore_farm_animals/resource/animals/dog.ogg"),
                   ("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRBark_1_LA_cut.ogg"),
                   ("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRBark_3_LA_cut.ogg"),
                   ("tuxpaint-stamps-default", TP + "animals/mammals/dogs/dog.ogg", None)],
    "animal:cat": [("gcompris-qt-data", GC_RCC + "explore_farm_animals.rcc", GC + "explore_farm_animals/resource/animals/cat.ogg"),
                   ("tuxpaint-stamps-default", TP + "seasonal/halloween/blackcat.ogg", None)],
    "animal:cow": [("gcompris-qt-data", GC_RCC + "explore_farm_animals.rcc", GC + "explore_farm_animals/resource/animals/cow.ogg"),
                   ("tuxpaint-stamps-default", TP + "animals/mammals/bovines/cow.ogg", None),
                   ("tuxpaint-stamps-default", TP + "animals/mammals/bovines/cow_white.ogg", None),
                   ("openttd-opensfx", OPENSFX, "Cow")],
    "animal:bird": [("tuxpaint-stamps-default", TP + f"animals/birds/{b}.ogg", None)
                    for b in ("blackbird", "crow", "cuckoo", "lark", "rooster", "seagull")]
    + [("openttd-opensfx", OPENSFX, "Tropical: Bird (1)"), ("openttd-opensfx", OPENSFX, "Tropical: Bird (2)")],
    "nature:rain": [("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRRain_in_garden_01_LA_cut.ogg"),
                    ("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRFrogsInPondDuringStormLACut.ogg")],
    "nature:water": [("gcompris-qt-data", GC_RCC + "core.rcc", "gcompris/src/core/resource/sounds/water.wav"),
                     ("gcompris-qt-data", GC_RCC + "canal_lock.rcc", GC + "canal_lock/resource/water_fill.wav"),
                     ("gcompris-qt-data", GC_RCC + "clickgame.rcc", GC + "clickgame/resource/drip.wav"),
                     ("freeciv-data", "usr/share/games/freeciv/stdsounds/Splash.ogg", None)],
    "nature:wind": [("openttd-opensfx", OPENSFX, "Wind"), ("openttd-opensfx", OPENSFX, "Heavy wind")],
    "nature:insects": [("tuxpaint-stamps-default", TP + f"animals/insects/{b}.ogg", None)
                       for b in ("bee", "hornet", "mosquito", "grasshopper")],
    "human:applause": [("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRApplauses_1_LA_cut.ogg"),
                       ("openttd-opensfx", OPENSFX, "Applause")],
    "human:footsteps": [("freeciv-data", "usr/share/games/freeciv/stdsounds/foot3.ogg", "steps")],
    "human:laughter": [("tuxpaint-data", "usr/share/tuxpaint/sounds/giggle.wav", None)],
    "human:heartbeat": [("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRHeart_beat_01_LA.ogg")],
    "domestic:door": [("gcompris-qt-data", GC_RCC + "canal_lock.rcc", GC + "canal_lock/resource/door_open.wav"),
                      ("gcompris-qt-data", GC_RCC + "canal_lock.rcc", GC + "canal_lock/resource/door_close.wav"),
                      ("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRDoor_Open_2_LA.ogg")],
    "domestic:phone": [("sound-theme-freedesktop", FD + "phone-incoming-call.oga", None),
                       ("sound-theme-freedesktop", FD + "phone-outgoing-calling.oga", None),
                       ("oxygen-sounds", "usr/share/sounds/Oxygen-Im-Phone-Ring.ogg", None),
                       ("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRRing_01_LA.ogg")],
    "domestic:alarm-clock": [("sound-theme-freedesktop", FD + "alarm-clock-elapsed.oga", None)],
    "domestic:keyboard": [("bucklespring-data", "usr/share/buckle/wav/", f"typing{i}") for i in range(3)],
    "urban:engine": [("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRStartAndStopCarEngine1LACut.ogg"),
                     ("openttd-opensfx", OPENSFX, "Truck/old bus start, pull away"),
                     ("openttd-opensfx", OPENSFX, "Modern bus start"), ("openttd-opensfx", OPENSFX, "Old bus start")],
    "urban:train": [("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + "memory-sound/resource/LRTrain_slowing_down_01_LA_cut.ogg"),
                    ("gcompris-qt-data", GC_RCC + "railroad.rcc", GC + "railroad/resource/sounds/train.wav"),
                    ("openttd-opensfx", OPENSFX, "Steam train station departure"),
                    ("openttd-opensfx", OPENSFX, "Diesel/electric train station departure"),
                    ("openttd-opensfx", OPENSFX, "Monorail train station departure")],
    "urban:machinery": [("gcompris-qt-data", GC_RCC + "memory-sound.rcc", GC + f"memory-sound/resource/LRFactory_noise_0{i}_LA.ogg")
                        for i in (1, 2, 3, 4)] + [("openttd-opensfx", OPENSFX, "Jackhammer")],
}
SYNTHESIZED = ("urban:siren",)


def rcc_member(data: bytes, member: str) -> bytes:
    """One file of a Qt resource archive (format 1-3; zlib-compressed entries inflated)."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt rcc archive")
    version, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    node = 14 if version == 1 else 22

    def name(off):
        n = struct.unpack(">H", data[names + off:names + off + 2])[0]
        return data[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        p = tree + i * node
        name_off, flags = struct.unpack(">IH", data[p:p + 6])
        here = prefix + (name(name_off) if i else "")
        if flags & 2:
            count, first = struct.unpack(">II", data[p + 6:p + 14])
            for c in range(first, first + count):
                found = walk(c, here + "/" if i else "")
                if found is not None:
                    return found
            return None
        if here != member:
            return None
        off = struct.unpack(">I", data[p + 10:p + 14])[0]
        size = struct.unpack(">I", data[blobs + off:blobs + off + 4])[0]
        blob = data[blobs + off + 4:blobs + off + 4 + size]
        return zlib.decompress(blob[4:]) if flags & 1 else blob

    found = walk(0, "")
    if found is None:
        raise KeyError(member)
    return found


def opensfx_member(data: bytes, title: str) -> tuple[bytes, str]:
    """(RIFF wav, full description) of the OpenTTD sound-catalogue entry whose quoted title is ``title``."""
    count = (struct.unpack("<I", data[:4])[0] & 0x7FFFFFFF) // 8
    for i in range(count):
        off, size = struct.unpack("<II", data[8 * i:8 * i + 8])
        off &= 0x7FFFFFFF
        n = data[off]
        desc = data[off + 1:off + 1 + n].rstrip(b"\0").decode("latin-1")
        if desc.startswith(f'"{title}"'):
            return data[off + 1 + n:off + size], desc
    raise KeyError(title)


def package_licence(copyright_text: str, path: str) -> str:
    """Licence of ``path`` in a DEP-5 copyright file: the last matching ``Files:`` stanza (most specific by
    convention), else the first ``License:`` line."""
    best = None
    for stanza in re.split(r"\n\s*\n", copyright_text):
        m = re.search(r"^Files:(.*?)(?=^\S)", stanza + "\nX", re.DOTALL | re.MULTILINE)
        lic = re.search(r"^License:[ \t]*(\S.*)$", stanza, re.MULTILINE)
        if m and lic and any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, "*/" + pat)
                               for pat in m.group(1).split()):
            best = lic.group(1).strip()
    if best is None:
        first = re.search(r"^License:[ \t]*(\S.*)$", copyright_text, re.MULTILINE)
        best = first.group(1).strip() if first else "GPL-2+ (see the package's copyright file)"
    return best


def sox(*args) -> None:
    subprocess.run(["sox", *map(str, args)], check=True, capture_output=True)


def to_flac(src: Path, dst: Path) -> None:
    sox(src, "-r", 16000, "-c", 1, "-b", 16, dst, "silence", 1, 0.02, "0.5%", "reverse", "silence", 1, 0.02,
        "0.5%", "reverse", "trim", 0, MAX_SECONDS, "norm", -1)


def assemble(hits: list[Path], dst: Path, rng: random.Random, seconds: float, gap: tuple[float, float],
             work: Path) -> None:
    """A sequence of recorded hits (steps, key strokes) with random gaps and gains, ``seconds`` long."""
    parts, total = [], 0.0
    for k in range(400):
        hit = rng.choice(hits)
        g = work / f"part{k}.wav"
        sox(hit, "-r", 16000, "-c", 1, "-b", 16, g, "vol", round(rng.uniform(0.5, 1.0), 3), "pad", 0,
            round(rng.uniform(*gap), 3))
        parts.append(g)
        total += float(subprocess.run(["soxi", "-D", str(g)], check=True, capture_output=True, text=True).stdout)
        if total >= seconds:
            break
    sox(*parts, dst, "trim", 0, seconds, "norm", -1)


def main() -> int:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        packages = sorted({p for files in SOURCES.values() for p, _, _ in files})
        subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True, capture_output=True)
        versions, copyrights = {}, {}
        for deb in tmp.glob("*.deb"):
            pkg = subprocess.run(["dpkg-deb", "-f", str(deb), "Package"], check=True, capture_output=True, text=True).stdout.strip()
            versions[pkg] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                                           text=True).stdout.strip()
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / pkg)], check=True)
            copyrights[pkg] = (tmp / pkg / "usr/share/doc" / pkg / "copyright").read_text(errors="replace")
        rows = []
        for cls, files in SOURCES.items():
            for n, (pkg, path, member) in enumerate(files):
                out_name = f"{cls.replace(':', '_')}_{n}.flac"
                raw = tmp / f"raw_{cls.replace(':', '_')}_{n}"
                where, licence_path, note = path, path, ""
                if path.endswith(".rcc"):
                    raw = raw.with_suffix(Path(member).suffix)
                    raw.write_bytes(rcc_member((tmp / pkg / path).read_bytes(), member))
                    where = f"{path} :{member}"
                    licence_path = member.removeprefix("gcompris/")
                elif path.endswith(".cat"):
                    blob, desc = opensfx_member((tmp / pkg / path).read_bytes(), member)
                    raw = raw.with_suffix(".wav")
                    raw.write_bytes(blob)
                    where, licence_path, note = f"{path} :{member}", "src/wav/x.wav", desc
                elif member == "steps":
                    raw = raw.with_suffix(".wav")
                    assemble([tmp / pkg / path], raw, rng, 4.0, (0.35, 0.6), tmp)
                    note = "footstep sequence assembled from this one recorded step (random gaps and gains)"
                elif member and member.startswith("typing"):
                    keys = sorted((tmp / pkg / path).glob("*.wav"))
                    raw = raw.with_suffix(".wav")
                    assemble(keys, raw, rng, 4.0, (0.03, 0.2), tmp)
                    where = f"{path}*.wav"
                    note = "typing sequence assembled from the package's recorded key presses and releases"
                else:
                    raw = tmp / pkg / path
                to_flac(raw, HERE / out_name)
                licence = package_licence(copyrights[pkg], licence_path.removeprefix("usr/share/"))
                rows.append((out_name, cls, pkg, versions[pkg], where, licence, note))
                print(out_name, cls, pkg, licence, file=sys.stderr)
    header = ("file", "class", "package", "version", "path_in_package", "licence", "note")
    with open(HERE / "sources.tsv", "w", encoding="utf-8") as fh:
        fh.write("\t".join(header) + "\n")
        fh.writelines("\t".join(r) + "\n" for r in rows)
    write_markdown(rows)
    return 0


def write_markdown(rows) -> None:
    lines = ["# Real sound recordings of the speech-events benchmark", "",
             ("Taken from Debian bookworm packages by `curate.py` (run it to re-create this folder), converted to "
             "16 kHz mono FLAC (silence trimmed, peak -1 dB, at most 6 s). The benchmark build "
             "(`python -m genir.data.speech_events build`) cuts and varies them into clips; its `build.json` "
             "names the source file of every clip. Classes with no recording in Debian are synthesized by sox "
             f"in the build: {', '.join(SYNTHESIZED)}."), "",
             "| file | class | package (version) | path inside the package | licence | note |",
             "|---|---|---|---|---|---|"]
    for f, cls, pkg, ver, where, lic, note in rows:
        lines.append(f"| {f} | {cls} | {pkg} ({ver}) | `{where}` | {lic} | {note.replace('|', '/')} |")
    (HERE / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
