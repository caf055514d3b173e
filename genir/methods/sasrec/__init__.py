"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the user's item sequence."""

from genir.methods.sasrec.model import SASRec, SASRecConfig

__all__ = ["SASRec", "SASRecConfig"]
