"""Whisper loading: the CTranslate2 reader and mapping (a tiny model written in CTranslate2's layout here), the
HF-folder path, the conversion cache keyed by sha256, and (slow) the real packaged Whisper-base."""

from __future__ import annotations

import shutil
import struct
import wave

import numpy as np
import pytest
import torch

from genir.errors import ConfigError
from genir.llm import whisper as W


def _tokenizer():
    try:
        return W.packaged_tokenizer("base")
    except ConfigError as e:
        pytest.skip(str(e))


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path, variables: dict[str, np.ndarray]) -> None:
    """CTranslate2's model.bin layout (ctranslate2/specs/model_spec.py::_serialize), float16 weights."""
    out = [struct.pack("<I", 6), _string("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype(np.float16): 4, np.dtype(np.int32): 3, np.dtype(np.int8): 1}[arr.dtype]
        out += [_string(name), struct.pack("<B", arr.ndim), *[struct.pack("<I", d) for d in arr.shape],
                struct.pack("<BI", dtype, arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", 0))  # no aliases
    path.write_bytes(b"".join(out))


def hf_to_ct2(model) -> dict[str, np.ndarray]:
    """The inverse of genir.llm.whisper.ct2_to_hf (fused q/k/v with a zero k bias, as CTranslate2 stores it)."""
    sd = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    v: dict[str, np.ndarray] = {"encoder/num_heads": np.array([model.config.encoder_attention_heads], np.int8)}

    def lin(src, dst):
        v[f"{dst}/weight"], v[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def ln(src, dst):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        v[f"{side}/position_encodings/encodings"] = sd[f"{hf}.embed_positions.weight"]
        ln(f"{hf}.layer_norm", f"{side}/layer_norm")
        for i in range(getattr(model.config, f"{side}_layers")):
            src, dst = f"{hf}.layers.{i}", f"{side}/layer_{i}"
            a = f"{src}.self_attn"
            zero = np.zeros_like(sd[f"{a}.q_proj.bias"])
            v[f"{dst}/self_attention/linear_0/weight"] = np.concatenate(
                [sd[f"{a}.{n}_proj.weight"] for n in "qkv"])
            v[f"{dst}/self_attention/linear_0/bias"] = np.concatenate([sd[f"{a}.q_proj.bias"], zero,
                                                                       sd[f"{a}.v_proj.bias"]])
            lin(f"{a}.out_proj", f"{dst}/self_attention/linear_1")
            ln(f"{src}.self_attn_layer_norm", f"{dst}/self_attention/layer_norm")
            lin(f"{src}.fc1", f"{dst}/ffn/linear_0")
            lin(f"{src}.fc2", f"{dst}/ffn/linear_1")
            ln(f"{src}.final_layer_norm", f"{dst}/ffn/layer_norm")
            if side == "decoder":
                c = f"{src}.encoder_attn"
                lin(f"{c}.q_proj", f"{dst}/attention/linear_0")
                v[f"{dst}/attention/linear_1/weight"] = np.concatenate([sd[f"{c}.k_proj.weight"],
                                                                         sd[f"{c}.v_proj.weight"]])
                v[f"{dst}/attention/linear_1/bias"] = np.concatenate([zero, sd[f"{c}.v_proj.bias"]])
                lin(f"{c}.out_proj", f"{dst}/attention/linear_2")
                ln(f"{src}.encoder_attn_layer_norm", f"{dst}/attention/layer_norm")
    lin("model.encoder.conv1", "encoder/conv1")
    lin("model.encoder.conv2", "encoder/conv2")
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return v


def test_ct2_file_round_trip_rebuilds_the_model_and_is_cached_by_sha(tmp_path):
    tok = _tokenizer()
    model = W.tiny_whisper(tok, d_model=32, layers=2, heads=2, ffn=64, source_positions=100)
    with torch.no_grad():  # fp16 in the file: make the weights exactly representable
        for p in model.parameters():
            p.copy_(p.half().float())
    folder = tmp_path / "ct2"
    folder.mkdir()
    write_ct2(folder / "model.bin", hf_to_ct2(model))
    shutil.copy(W.packaged_whisper("base")[1] / "tokenizer.json", folder / "tokenizer.json")
    cache = tmp_path / "cache"
    w = W.load_whisper(folder, cache_dir=cache)
    rebuilt = w.model.state_dict()
    for k, t in model.state_dict().items():
        assert torch.equal(rebuilt[k], t), k
    assert w.multilingual and w.prompt_ids == tok.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"])
    converted = list(cache.glob("whisper-*"))
    assert len(converted) == 1 and converted[0].name == f"whisper-{w.signature[:16]}"
    mtime = (converted[0] / "config.json").stat().st_mtime_ns
    again = W.load_whisper(folder, cache_dir=cache)  # read from the cache, not converted again
    assert again.signature == w.signature and (converted[0] / "config.json").stat().st_mtime_ns == mtime


def test_split_model_bin_hashes_as_the_whole_file(tmp_path):
    data = np.random.default_rng(0).bytes(10_000)
    (tmp_path / "a").write_bytes(data[:3_000])
    (tmp_path / "b").write_bytes(data[3_000:])
    (tmp_path / "all").write_bytes(data)
    assert W.parts_sha256([tmp_path / "a", tmp_path / "b"]) == W.parts_sha256([tmp_path / "all"])


def test_hf_folder_loads_by_path_and_bad_paths_are_clear_errors(tmp_path):
    tok = _tokenizer()
    model = W.tiny_whisper(tok, d_model=32, layers=1, heads=2, ffn=64, source_positions=100)
    model.save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    w = W.load_whisper(tmp_path / "hf")
    assert w.source == str((tmp_path / "hf").resolve()) and len(w.signature) == 64
    assert w.eot_id == tok.convert_tokens_to_ids("<|endoftext|>")
    with pytest.raises(ConfigError, match="not a Whisper name"):
        W.load_whisper(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.bin").write_bytes(b"\x01\x02")
    (tmp_path / "bad" / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match="CTranslate2"):
        W.load_whisper(tmp_path / "bad", cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_real_whisper_base_transcribes_an_espeak_clip(tmp_path):
    """Converts (or reads the cached conversion of) the packaged Whisper-base and transcribes espeak speech."""
    import subprocess

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    try:
        w = W.load_whisper("base")
    except ConfigError as e:
        pytest.skip(str(e))
    wav = tmp_path / "hello.wav"
    subprocess.run([espeak, "-w", str(wav), "Hello world. This is a test of offline speech recognition."],
                   check=True)
    with wave.open(str(wav)) as f:
        rate = f.getframerate()
        audio = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768
    audio = np.interp(np.arange(0, len(audio), rate / 16000), np.arange(len(audio)), audio).astype(np.float32)
    from genir.features.audio import encode_log_mel, log_mel

    with torch.no_grad():
        enc = encode_log_mel(w.model.model.encoder, log_mel([audio], 400))
    from transformers.modeling_outputs import BaseModelOutput

    out = w.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                           decoder_input_ids=torch.tensor([w.prompt_ids]), max_new_tokens=30, do_sample=False)
    text = w.tokenizer.decode(out[0], skip_special_tokens=True).lower()
    assert "world" in text and "speech recognition" in text, text
