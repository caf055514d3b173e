"""Double Mixture (Kang, Wu et al., arXiv 2404.13289): continual event detection from speech with a mixture of
adapter experts in one appended Whisper decoder layer and a mixture of memory; with its baselines
(fine-tuning, EWC, replay, L2P prompts, adapter without router, joint training). See README.md."""

from genir.methods.doublemix.config import LABELS, VARIANTS, DoubleMixConfig, rehearsal_based
from genir.methods.doublemix.memory import hybrid_indices, replay_indices
from genir.methods.doublemix.model import (
    AppendedDecoderLayer,
    BottleneckAdapter,
    EventDecoder,
    MixtureOfAdapters,
)
from genir.methods.doublemix.procedures import (
    StreamResult,
    decode_rows,
    run_stream,
    score_rows,
    word_error_rate,
)

__all__ = [
    "LABELS", "VARIANTS", "AppendedDecoderLayer", "BottleneckAdapter", "DoubleMixConfig", "EventDecoder",
    "MixtureOfAdapters", "StreamResult", "decode_rows", "hybrid_indices", "rehearsal_based", "replay_indices",
    "run_stream", "score_rows", "word_error_rate",
]
