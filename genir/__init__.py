"""genir: generative retrieval and recommendation centred on semantic IDs.

The foundation layers are importable from here:

>>> from genir.data import load_dataset, leave_one_out
>>> from genir.methods import build_method
>>> from genir.training import Trainer, TrainerConfig
"""

__version__ = "0.1.0"
