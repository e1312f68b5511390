"""A PNG grid of random dataset samples (front | side pairs) so a person can look at the data."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from training.dataset import load_dataset


def sample_grid(folder: str | Path, rows: int = 4, cols: int = 6, seed: int = 0) -> np.ndarray:
    ds = load_dataset(folder)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds), size=min(rows * cols, len(ds)), replace=False)
    b = ds.batch(np.sort(idx))
    h, w = ds.canvas_hw
    tiles = []
    for k in range(len(idx)):
        pair = np.hstack([b["front"][k], np.ones((h, 2), np.uint8), b["side"][k]]) * 255
        pair = cv2.cvtColor(pair.astype(np.uint8), cv2.COLOR_GRAY2BGR)
        pair[:, w : w + 2] = (0, 140, 255)  # separator between front and side
        label = f"{b['height'][k] * 100:.0f}cm W{b['measurements'][k][2] * 100:.0f}"
        cv2.putText(pair, label, (2, h - 3), cv2.FONT_HERSHEY_PLAIN, 0.8, (60, 200, 60), 1)
        tiles.append(np.pad(pair, ((2, 2), (2, 2), (0, 0)), constant_values=60))
    while len(tiles) < rows * cols:
        tiles.append(np.full_like(tiles[0], 60))
    return np.vstack([np.hstack(tiles[r * cols : (r + 1) * cols]) for r in range(rows)])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/sample_grid.png"))
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--cols", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    img = sample_grid(args.dataset, args.rows, args.cols, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), img)
    print(f"wrote {args.out}")
    return 0
