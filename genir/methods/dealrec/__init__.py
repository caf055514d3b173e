"""DEALRec (Lin et al., SIGIR 2024): prune the training samples of an LLM recommender by influence (on a cheap
surrogate) and effort (on the LLM itself), keeping score coverage, before few-shot fine-tuning."""

from genir.methods.dealrec.samples import SamplePool, draw_pool, training_samples
from genir.methods.dealrec.scores import el2n_scores, influence_scores, linear_grad_norms, minmax
from genir.methods.dealrec.selection import coverage_sample, random_sample, top_sample

__all__ = ["SamplePool", "coverage_sample", "draw_pool", "el2n_scores", "influence_scores", "linear_grad_norms",
           "minmax", "random_sample", "top_sample", "training_samples"]
