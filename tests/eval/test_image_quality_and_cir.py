"""PSNR / SSIM on hand-made images, and composed retrieval Recall@K on a hand-made gallery."""

import numpy as np

from genir.eval.composed_retrieval import composed_retrieval, dedupe_gallery
from genir.eval.image_quality import psnr, ssim


def test_psnr_and_ssim_values():
    a = np.full((2, 16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[1] += 10  # every pixel off by 10 grey levels: MSE = (10/255)^2
    p = psnr(b, a)
    assert np.isinf(p[0]) or p[0] > 100
    assert abs(p[1] - 10 * np.log10(255.0 ** 2 / 100.0)) < 1e-3
    s = ssim(b, a)
    assert abs(s[0] - 1.0) < 1e-6 and s[1] < 1.0


def test_composed_retrieval_recall():
    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    dup = np.concatenate([gallery, gallery[:3]])
    unique, rows = dedupe_gallery(dup)
    assert len(unique) == 20 and (rows[20:] == rows[:3]).all()
    exact = (gallery[:5], np.arange(5))  # queries identical to their targets
    wrong = (gallery[5:10], np.arange(5))  # each query is another gallery image
    res = composed_retrieval({"exact": exact, "wrong": wrong}, gallery, "pixels", ks=(1, 10), size=8)
    assert res["exact"] == {"recall@1": 1.0, "recall@10": 1.0}
    assert res["wrong"]["recall@1"] == 0.0
