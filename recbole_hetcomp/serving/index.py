"""Optional exact inner-product index of the item factors (faiss, ``recbole-hetcomp[serve]``).

The index holds [item_factors, item_bias] and is queried with [user_factors, 1], so its inner
products are the model's scores up to the user's constant bias: an exact (flat) index, not an
approximate one. Serving through it ranks by the same scores as brute force, but they are
summed in another order (faiss, then a batched product for the candidates, against one matrix
product): two items whose float32 scores differ by rounding alone may come in the other order
or trade places at the cut. Brute force itself does the same between batches of different
sizes (BLAS picks its kernels by shape), so no bit-for-bit promise is possible here.
"""

import numpy as np

from recbole_hetcomp.errors import HetCompError

EXTRA_HINT = 'pip install "recbole-hetcomp[serve]" (it installs faiss-cpu)'


def require_faiss(need="export_index needs faiss", other="or set export_index: False"):
    try:
        import faiss
    except ImportError:
        raise HetCompError(f"{need}, which is not installed: {EXTRA_HINT}, {other}") from None
    return faiss


def faiss_available():
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def augmented_items(item_factors, item_bias):
    items = np.asarray(item_factors, dtype=np.float32)
    bias = (np.zeros(len(items), dtype=np.float32) if item_bias is None
            else np.asarray(item_bias, dtype=np.float32))
    return np.ascontiguousarray(np.concatenate([items, bias[:, None]], axis=1))


def augmented_users(user_factors):
    users = np.asarray(user_factors, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([users, np.ones((len(users), 1), np.float32)], 1))


def build_index_bytes(item_factors, item_bias):
    """A serialised faiss ``IndexFlatIP`` over the augmented item vectors."""
    faiss = require_faiss()
    vectors = augmented_items(item_factors, item_bias)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return faiss.serialize_index(index).tobytes()


def read_index(path, n_items, dim):
    """The index at ``path``, checked to hold ``n_items`` vectors of ``dim`` + 1 numbers."""
    faiss = require_faiss("this package has a faiss index, which needs faiss",
                          "or rank by brute force without it: --no-index (in Python: "
                          "Recommender.load(path, use_index=False))")
    with open(path, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    try:
        index = faiss.deserialize_index(data)
    except RuntimeError as exc:
        raise HetCompError(f"the package's index cannot be read by faiss ({exc})") from None
    if index.ntotal != n_items or index.d != dim + 1:
        raise HetCompError("the package's index does not match its item factors")
    return index
