"""The problems measured: configurations, data, sizes and cost estimates.

A configuration is a flat dict (it is copied into every record of the results)::

    {"n": 16, "c0": 16, "c1": 16, "c2": 16, "h": 32, "w": 32,
     "k1": 3, "k2": 3, "p1": 1, "p2": 1, "s1": 1, "s2": 1, "d1": 1, "d2": 1,
     "bias": False, "dtype": "float32", "seed": 0, "data": "random"}

c0 -> c1 -> c2 channels, kernel k, padding p, stride s and dilation d of conv1 (1) and
conv2 (2); "data" is "random" (normal noise) or "photo" (scikit-learn's sample photographs).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "config",
    "crop_dataset",
    "dims",
    "estimate",
    "make_convs",
    "make_problem",
    "sample_photos",
    "torch_dtype",
]

_GEOMETRY_DEFAULTS = {"k1": 3, "k2": 3, "p1": 1, "p2": 1, "s1": 1, "s2": 1, "d1": 1, "d2": 1}


def config(
    n: int,
    c0: int,
    c1: int,
    c2: int,
    h: int,
    w: int,
    *,
    bias: bool = False,
    dtype: str = "float32",
    seed: int = 0,
    data: str = "random",
    **geometry: int,
) -> dict:
    """A configuration dict; ``geometry`` overrides k1, k2, p1, p2, s1, s2, d1, d2."""
    unknown = set(geometry) - set(_GEOMETRY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown geometry keys {sorted(unknown)}")
    return {
        "n": n,
        "c0": c0,
        "c1": c1,
        "c2": c2,
        "h": h,
        "w": w,
        **_GEOMETRY_DEFAULTS,
        **geometry,
        "bias": bias,
        "dtype": dtype,
        "seed": seed,
        "data": data,
    }


def torch_dtype(name: str) -> Any:
    """torch.float32 or torch.float64 from its name."""
    import torch  # noqa: PLC0415

    return {"float32": torch.float32, "float64": torch.float64}[name]


def make_convs(cfg: dict) -> tuple[Any, Any]:
    """conv1 (with a bias iff ``cfg["bias"]``) and conv2 (no bias) of a configuration."""
    import torch  # noqa: PLC0415

    dt = torch_dtype(cfg["dtype"])
    conv1 = torch.nn.Conv2d(
        cfg["c0"],
        cfg["c1"],
        cfg["k1"],
        padding=cfg["p1"],
        stride=cfg["s1"],
        dilation=cfg["d1"],
        bias=cfg["bias"],
    ).to(dt)
    conv2 = torch.nn.Conv2d(
        cfg["c1"],
        cfg["c2"],
        cfg["k2"],
        padding=cfg["p2"],
        stride=cfg["s2"],
        dilation=cfg["d2"],
        bias=False,
    ).to(dt)
    return conv1, conv2


def sample_photos() -> Any:
    """The two 427x640 RGB photographs of scikit-learn, as a (2, 3, 427, 640) uint8 tensor."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from sklearn.datasets import load_sample_images  # noqa: PLC0415

    imgs = np.stack(load_sample_images().images)  # (2, 427, 640, 3)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()


def make_problem(cfg: dict) -> tuple[Any, Any, Any, Any]:
    """(x, v_goal, conv1, conv2) of a configuration, v_goal random normal."""
    import torch  # noqa: PLC0415

    dt = torch_dtype(cfg["dtype"])
    g = torch.Generator().manual_seed(cfg.get("seed", 0))
    conv1, conv2 = make_convs(cfg)
    if cfg.get("data") == "photo":
        photos = sample_photos()[: cfg["n"]].to(dt) / 255.0
        x = (photos - photos.mean(dim=(0, 2, 3), keepdim=True)) / photos.std()
    else:
        x = torch.randn(cfg["n"], cfg["c0"], cfg["h"], cfg["w"], generator=g, dtype=dt)
    d = dims(cfg)
    v = torch.randn(cfg["n"], cfg["c2"], d["h2"], d["w2"], generator=g, dtype=dt)
    return x, v, conv1, conv2


def dims(cfg: dict) -> dict:
    """Sizes of a configuration.

    Returns
    -------
    dict
        A (rows of B, ones row included), E (kernel positions of conv2), L = h1 w1
        (intermediate positions), M = h2 w2 (output positions), C (= c2), n, and the
        spatial sizes h1, w1, h2, w2 (``convtools.geometry.conv_output_size``: stride and
        dilation included)
    """
    from convtools.geometry import conv_output_size  # noqa: PLC0415

    conv1, conv2 = make_convs({**cfg, "c0": 1, "c1": 1, "c2": 1})  # geometry only
    h1, w1 = conv_output_size((cfg["h"], cfg["w"]), conv1)
    h2, w2 = conv_output_size((h1, w1), conv2)
    a = cfg["c0"] * cfg["k1"] ** 2 + (1 if cfg["bias"] else 0)
    return {
        "A": a,
        "E": cfg["k2"] ** 2,
        "L": h1 * w1,
        "M": h2 * w2,
        "C": cfg["c2"],
        "n": cfg["n"],
        "h1": h1,
        "w1": w1,
        "h2": h2,
        "w2": w2,
    }


def estimate(cfg: dict, kind: str, method: str) -> tuple[float, float]:
    """(bytes of the tensors a route materializes, floating-point operations per call).

    Used to skip routes that would not fit (T alone has M E L entries).
    """
    d = dims(cfg)
    n, a, e, l_, m, c = d["n"], d["A"], d["E"], d["L"], d["M"], d["C"]
    item = 4 if cfg["dtype"] == "float32" else 8
    t_size = m * e * l_
    x_size = n * m * e * a
    if method == "gromo":  # T, X = B T (plus one permuted copy), B
        return (
            item * (t_size + 2 * x_size + n * a * l_),
            2.0 * n * a * l_ * m * e + 2.0 * n * m * e * a * a + 2.0 * n * m * e * a * c,
        )
    if method == "seed":
        return (
            item * (t_size + 2 * x_size + (a * e) ** 2),
            2.0 * n * a * l_ * m * e + 2.0 * n * m * (a * e) ** 2 + 2.0 * n * m * a * e * c,
        )
    if method == "bare":
        if kind == "tiny":
            return item * (n * a * l_ + a * a), 2.0 * n * l_ * a * a
        return item * (x_size + (a * e) ** 2), 2.0 * n * m * (a * e) ** 2
    # convtools: nothing of the size of T; the work of one Gram matrix plus N
    if kind == "tiny":
        return item * (2 * n * a * l_), 2.0 * n * l_ * a * a + 2.0 * n * m * c * a * e
    return item * (2 * x_size), 2.0 * n * m * (a * e) ** 2 + 2.0 * n * m * a * e * c


def crop_dataset(n_items: int, crop: int, seed: int) -> Any:
    """A ``torch.utils.data.Dataset`` of random crops of the sample photographs.

    ``n_items`` crops of ``crop`` x ``crop`` pixels (random photograph, position and
    horizontal flip, all drawn from the item's index), made on demand: only the two
    photographs are stored, whatever ``n_items``.
    """
    import torch  # noqa: PLC0415

    class RandomCrops(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.photos = sample_photos()

        def __len__(self) -> int:
            return n_items

        def __getitem__(self, i: int) -> Any:
            g = torch.Generator().manual_seed(seed * 1_000_003 + int(i))
            p = int(torch.randint(0, self.photos.shape[0], (1,), generator=g))
            top = int(torch.randint(0, self.photos.shape[2] - crop + 1, (1,), generator=g))
            left = int(torch.randint(0, self.photos.shape[3] - crop + 1, (1,), generator=g))
            img = self.photos[p, :, top : top + crop, left : left + crop].float() / 255.0
            if bool(torch.rand((), generator=g) < 0.5):
                img = img.flip(-1)
            return (img - 0.5) / 0.25

    return RandomCrops()
