from genir.methods.mmgrec.config import MMGRecConfig
from genir.methods.mmgrec.graph import GraphEncoderConfig, GraphSAGEEncoder, graph_representations
from genir.methods.mmgrec.graph_rqvae import GraphRQVAE, GraphRQVAEConfig
from genir.methods.mmgrec.model import MMGRec

__all__ = ["GraphEncoderConfig", "GraphRQVAE", "GraphRQVAEConfig", "GraphSAGEEncoder", "MMGRec", "MMGRecConfig",
           "graph_representations"]
