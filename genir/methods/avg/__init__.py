"""AVG (Li et al., "Revolutionizing Text-to-Image Retrieval as Autoregressive Token-to-Voken Generation", arXiv
2407.17274): images tokenized into vokens aligned with their captions (:class:`genir.ids.voken.VokenTokenizer`),
a generator trained to emit a caption's image vokens (generative stage, then a discriminative stage with hard
negatives mined by the constrained beam search), retrieval by constrained beam search over every indexed image.
The LiT-style two-tower supplies the aligned features and is the baseline. See README.md."""

from genir.methods.avg.config import AVGConfig
from genir.methods.avg.generator import FrozenTextStates, TokenToVoken, t5_from_scratch, word_tokenizer
from genir.methods.avg.grid import save_grid
from genir.methods.avg.pipeline import (
    ImageData,
    ImageIndex,
    aligned_features,
    build_image_index,
    caption_states,
    make_generator,
    negative_pool,
    prepare,
    read_image_task,
    same_image_groups,
    timed_evaluation,
    train_generator,
    train_two_tower,
)
from genir.methods.avg.two_tower import TwoTower

__all__ = [
    "AVGConfig",
    "FrozenTextStates",
    "ImageData",
    "ImageIndex",
    "TokenToVoken",
    "TwoTower",
    "aligned_features",
    "build_image_index",
    "caption_states",
    "make_generator",
    "negative_pool",
    "prepare",
    "read_image_task",
    "same_image_groups",
    "save_grid",
    "t5_from_scratch",
    "timed_evaluation",
    "train_generator",
    "train_two_tower",
    "word_tokenizer",
]
