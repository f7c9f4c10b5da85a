"""Data for the Pixel Transformer: seeded synthetic images, or real handwritten digits.

Both return NumPy arrays (images float32 (N, seq, img, img), labels int64 (N,)); the training
script turns each batch into tensors.
"""
from __future__ import annotations

import numpy as np


def synthetic(n: int, seq: int, img: int, seed: int, keep=None):
    """Gaussian images with uniform random labels, as in the brief's run. `keep`: indices of the
    samples wanted (default: all); every sample is drawn in turn, so those get the values of a
    whole draw, and the rest stay zeros, which take no memory until written."""
    rng = np.random.default_rng(seed)
    wanted = set(range(n) if keep is None else np.asarray(keep).tolist())
    images = np.zeros((n, seq, img, img), np.float32)
    for i in range(n):  # the same values as one draw of the whole array
        sample = rng.standard_normal((seq, img, img), dtype=np.float32)
        if i in wanted:
            images[i] = sample
    return images, rng.integers(0, 10, size=n)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, h, w) images to (N, size, size), pixel centres aligned."""
    n, h, w = images.shape
    rows = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    cols = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = images[:, r0][:, :, c0] * (1 - fc) + images[:, r0][:, :, c1] * fc
    bottom = images[:, r1][:, :, c0] * (1 - fc) + images[:, r1][:, :, c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def digits(seq: int, img: int, seed: int, train_sequences: int = 6000, test_sequences: int = 1000):
    """Sequences of `seq` handwritten digits labelled by the largest digit among them.

    The label needs every image of the sequence. Digit images are split into train and held-out
    sets first, so no held-out sequence shares an image with training. Returns
    ((train_images, train_labels), (test_images, test_labels)).
    """
    try:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download
    except ImportError as error:
        raise ImportError("the digits data comes with scikit-learn: pip install scikit-learn, or "
                          "pip install -e '.[examples]' in the clone") from error

    bunch = load_digits()
    pictures = resize(bunch.images.astype(np.float32) / 16.0, img)
    pictures = (pictures - pictures.mean()) / pictures.std()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pictures))
    held_out = len(pictures) // 5
    splits = (order[held_out:], train_sequences), (order[:held_out], test_sequences)
    out = []
    for pool, count in splits:
        chosen = rng.choice(pool, size=(count, seq))
        out.append((pictures[chosen], bunch.target[chosen].max(axis=1)))
    return tuple(out)
