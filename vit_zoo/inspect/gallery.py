"""The README's gallery: a few of the digits' test images written as PNG files, then
`vit-zoo explain` on them with a digits-trained model.

    vit-zoo demo --no-export
    python -m vit_zoo.inspect.gallery runs/demo/model.keras recipes/gallery
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_digits(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """The first `count` test digits (of the demo's split), 8x8 scans upscaled to 64x64 RGB PNGs:
    `vit-zoo explain` resizes them to the model's input as its evaluation does."""
    from PIL import Image

    from vit_zoo.train.data import digit_arrays

    _, (images, labels) = digit_arrays(64, 0.2, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"digit_{index}_is_{labels[index]}.png"
        Image.fromarray(np.clip(images[index], 0, 255).round().astype("uint8")).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vit_zoo.inspect.gallery",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a digits-trained .keras model, e.g. runs/demo/model.keras")
    parser.add_argument("out", help="folder for the input PNGs (inputs/) and the figures")
    parser.add_argument("--count", type=int, default=3, help="how many test digits")
    args = parser.parse_args(argv)
    from vit_zoo import cli

    out = Path(args.out)
    inputs = write_digits(out / "inputs", args.count)
    return cli.main(["explain", *map(str, inputs), "--model", args.model, "--out", str(out)])


if __name__ == "__main__":
    raise SystemExit(main())
