"""The shared identifier layer: item features -> semantic IDs -> :class:`SemanticIdTable`.

Schemes (:class:`IdScheme`: ``fit(features)``, ``encode(features) -> (N, L_sem)``, ``level_sizes``, save/load):

* ``rqvae`` - :class:`RQVAE`, TIGER's RQ-VAE on vector-quantize-pytorch's ResidualVQ;
* ``rq_kmeans`` - :class:`RQKMeans`, residual k-means (faiss), training-free;
* ``hkmeans`` - :class:`HierarchicalKMeans`, DSI's hierarchical k-means semantic docids;
* ``atomic`` - :class:`AtomicIds`, one unique code per item;
* ``voken`` - :class:`VokenTokenizer`, AVG's image tokenizer: a shared-codebook RQ-VAE aligned with the images'
  caption embeddings.

Then :func:`resolve_collisions` appends a last level that makes IDs unique (policies ``index``, ``popularity``,
``none``) and :class:`SemanticIdTable` maps items <-> IDs <-> tokens and reports statistics. Declarative specs
live in ``tokenizers/*.yaml`` (:func:`load_spec`, :func:`build_scheme`)::

    spec = load_spec("tokenizers/rq_kmeans.yaml")
    x = item_features(spec.features, dataset)              # (N, d)
    scheme = build_scheme(spec).fit(x)
    table = SemanticIdTable.build(scheme, x, spec.collision, popularity=None)
    table.stats()

Extension point: a new scheme is an :class:`IdScheme` subclass with a ``name``, a :class:`SchemeConfig`
dataclass (``config_class``) and the five methods, added with ``register_scheme(name, cls)`` or declared in the
``genir.schemes`` entry-point group of a package's ``pyproject.toml``; specs can then say ``scheme: <name>``. The planned ones: MMGRec's Graph RQ-VAE is an RQ-VAE over graph-encoder item vectors
(compose a graph encoder with :class:`RQVAE`, e.g. ``latent_dim: 4, codebook_size: 128``); AVG's image vokens
are an :class:`RQVAE` with ``shared_codebook: true`` whose subclass adds the caption-alignment loss in
:meth:`RQVAE.training_loss`.
"""

from __future__ import annotations

from genir.ids.atomic import AtomicIds, AtomicIdsConfig
from genir.ids.base import IdScheme, SemanticIdError, as_features
from genir.ids.collisions import POLICIES, CollisionReport, collision_report, group_ranks, resolve_collisions
from genir.ids.config import SchemeConfig, describe, param
from genir.ids.hkmeans import HierarchicalKMeans, HierarchicalKMeansConfig
from genir.ids.rq_kmeans import RQKMeans, RQKMeansConfig
from genir.ids.rqvae import RQVAE, RQVAEConfig
from genir.ids.spec import SchemeSpec, build_scheme, load_spec
from genir.ids.table import SemanticIdTable
from genir.ids.voken import VokenConfig, VokenTokenizer
from genir.registry import Registry

SCHEMES: Registry[type[IdScheme]] = Registry("identifier scheme", "genir.schemes", SemanticIdError)
for _cls in (RQVAE, RQKMeans, HierarchicalKMeans, AtomicIds, VokenTokenizer):
    SCHEMES.register(_cls.name, _cls)


def available_schemes() -> Registry[type[IdScheme]]:
    """:data:`SCHEMES`: the built-in schemes, plus those declared in the ``genir.schemes`` entry-point group
    (MMGRec's ``graph_rqvae`` lives in :mod:`genir.methods` and is declared there, so this layer never imports
    a method), loaded on first use."""
    return SCHEMES


def register_scheme(name: str, cls: type[IdScheme], *, replace: bool = False) -> type[IdScheme]:
    """Add an identifier scheme to :data:`SCHEMES` (usable as ``scheme: <name>`` in a spec); returns ``cls``.

    ``cls`` must subclass :class:`IdScheme` and have ``cls.name == name``; a taken name needs ``replace=True``.
    """
    if not (isinstance(cls, type) and issubclass(cls, IdScheme)):
        raise TypeError(f"register_scheme({name!r}): {cls!r} is not an IdScheme subclass")
    if cls.name != name:
        raise ValueError(f"register_scheme({name!r}): {cls.__name__}.name is {cls.name!r}; they must match so "
                         "that saved schemes load back")
    if name in SCHEMES and SCHEMES[name] is not cls and not replace:
        raise ValueError(f"register_scheme: {name!r} is already {SCHEMES[name].__name__}; pass replace=True")
    return SCHEMES.register(name, cls, replace=True)


__all__ = [
    "POLICIES",
    "RQVAE",
    "SCHEMES",
    "AtomicIds",
    "AtomicIdsConfig",
    "CollisionReport",
    "HierarchicalKMeans",
    "HierarchicalKMeansConfig",
    "IdScheme",
    "RQKMeans",
    "RQKMeansConfig",
    "RQVAEConfig",
    "SchemeConfig",
    "SchemeSpec",
    "SemanticIdError",
    "SemanticIdTable",
    "VokenConfig",
    "VokenTokenizer",
    "as_features",
    "available_schemes",
    "build_scheme",
    "collision_report",
    "describe",
    "group_ranks",
    "load_spec",
    "param",
    "register_scheme",
    "resolve_collisions",
]
