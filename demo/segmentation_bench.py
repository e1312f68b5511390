"""What the zoomed second rembg run costs a photo: one run against the page's segmentation.

    python -m demo.segmentation_bench          # about a minute on 2 cores

Synthetic 800x600 photos of one body (front and side, :func:`demo.synthetic.compose_photo`)
with the person at three shares of the photo's height; each photo is segmented ``--repeats``
times by rembg once and by :func:`bodyshape.photo.person_probability` (rembg, then again on a
crop around the person when the crop is smaller than the photo), alternating, after a warm-up.
Prints the median seconds a photo and their ratio. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

#: The person's height over the photo's: the repeatability split frames people at 0.54-0.9.
SHARES = (0.55, 0.7, 0.9)


def main() -> None:
    from bodyshape.body_model import get_body_model
    from bodyshape.photo import get_segmenter, person_probability
    from demo.synthetic import compose_photo, render_masks

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    seg = get_segmenter()
    masks = render_masks(get_body_model().sample_shapes(1, seed=5)[0])
    seg(np.full((800, 600, 3), 128, np.uint8))  # warm-up: ONNX Runtime's first run allocates
    load = os.getloadavg()
    print(f"rembg u2netp, {os.cpu_count()} CPU cores, load average {load[0]:.2f} before; median of {a.repeats} runs\n")
    print("| person / photo height | view | second run | one run, s | with the zoomed run, s | ratio |")
    print("|---|---|---|---|---|---|")
    calls = []

    def counted(rgb: np.ndarray) -> np.ndarray:
        calls.append(1)
        return seg(rgb)

    for share in SHARES:
        for view, mask in zip(("front", "side"), masks, strict=True):
            img = compose_photo(mask, np.random.default_rng(11), body_frac=share)
            once, zoomed = [], []
            for _ in range(a.repeats):
                t = time.perf_counter()
                seg(img)
                once.append(time.perf_counter() - t)
                calls.clear()
                t = time.perf_counter()
                person_probability(img, counted)
                zoomed.append(time.perf_counter() - t)
            o, z = float(np.median(once)), float(np.median(zoomed))
            print(f"| {share:.2f} | {view} | {'yes' if len(calls) == 2 else 'no'} | {o:.3f} | {z:.3f} | {z / o:.2f} |")


if __name__ == "__main__":
    main()
