from genir.methods.miggt.config import MIGGTConfig
from genir.methods.miggt.model import MIGGT

__all__ = ["MIGGT", "MIGGTConfig"]
