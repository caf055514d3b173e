from genir.methods.tiger.config import TigerConfig
from genir.methods.tiger.model import Tiger

__all__ = ["Tiger", "TigerConfig"]
