"""Offline ALS: rating matrix -> ALS factors -> item-item cosine top-M.

Pure numpy + scipy.sparse. See :mod:`offline_als.als` for the model and the maths.
"""
from .als import ALS, ratings_to_csr
from .ids import IdMap
from .similarity import top_similar
from .split import train_test_split

__all__ = ["ALS", "IdMap", "ratings_to_csr", "top_similar", "train_test_split"]
