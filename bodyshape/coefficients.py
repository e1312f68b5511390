"""Anny's blendshape coefficients of a batch of shape vectors, in a fixed handful of tensor ops.

Anny computes them (``Anny._get_phenotype_blendshape_coefficients``) with Python loops: one
piecewise-linear interpolation per phenotype, one column at a time for the 26 phenotype
variations, a product over all 26 variations for each of the 624 phenotype blendshapes, and two
indexed writes per local change: 1,131 ATen operations per call, forward only, whatever the
batch. On a GPU each is a kernel launch, and training calls it twice a step (prediction and
target), so the launches, not the arithmetic, set the one-GPU recipe's speed (docs/decisions.md).
The same numbers here take 144 operations (counted the same way, `python -m
training.body_model_bench`): the interpolations of all phenotypes at once over one table of anchors,
the variations gathered by one index, each blendshape the product of its own 3 to 6 variations
only, the local changes split by one stack.

Same formulas, same float64: ``tests/test_body_model.py`` checks values and gradients against
Anny's own function. Only what this project's model uses is supported (no extrapolation beyond
the anchors, no facial actions); the constructor refuses anything else.
"""

from __future__ import annotations

import torch

from bodyshape.errors import BodyShapeError

#: Anny's phenotypes that mix by normalised weights instead of interpolation.
RACE_LABELS = ("african", "asian", "caucasian")


class BlendshapeCoefficients:
    """``(B, N_SHAPE) -> (B, C)`` blendshape coefficients, Anny's, built from one Anny instance.

    Holds only constant tables (on the Anny instance's device and dtype); calling it does not
    touch the instance, so it is safe from any thread.
    """

    def __init__(self, anny_model) -> None:  # noqa: ANN001  (anny.Anny, imported lazily by the caller)
        from anny.models.model_data import PHENOTYPE_LABELS as ANNY_PHENOTYPES
        from anny.models.model_data import PHENOTYPE_VARIATIONS

        a = anny_model
        if a.extrapolate_phenotypes:
            raise BodyShapeError("BlendshapeCoefficients supports Anny without phenotype extrapolation only")
        if a.facial_action_labels:
            raise BodyShapeError("BlendshapeCoefficients supports Anny without facial actions only")
        dtype, device = a.dtype, a.stacked_phenotype_blend_shapes_mask.device
        all_labels = list(ANNY_PHENOTYPES)
        if list(PHENOTYPE_VARIATIONS)[0] != "race" or list(PHENOTYPE_VARIATIONS["race"]) != list(RACE_LABELS):
            raise BodyShapeError(f"unexpected race variations in this anny: {PHENOTYPE_VARIATIONS['race']}")
        # Where each of the model's phenotypes sits among all of Anny's (the rest stay at 0.5).
        self.n_all = len(all_labels)
        self.given = torch.tensor([all_labels.index(k) for k in a.phenotype_labels], device=device)
        self.race = torch.tensor([all_labels.index(k) for k in RACE_LABELS], device=device)
        # One row per interpolated variation, in Anny's column order: the phenotype it reads,
        # its anchor, the segment below it (the variation is that segment's upper end) and the
        # segment above it (its lower end). Anny puts a value on a segment's upper anchor into
        # that segment, and the lowest anchor into the first: its gradient is one-sided there,
        # and so is this one's.
        rows: dict[str, list] = {}
        for name, variations in PHENOTYPE_VARIATIONS.items():
            if name == "race":
                continue
            anchors = [float(x) for x in a.anchors[name].to(dtype=dtype, device="cpu")]
            n = len(variations)
            if len(anchors) != n or n < 2:
                raise BodyShapeError(f"anny's {name} has {len(anchors)} anchors for {n} variations")
            for j in range(n):
                lo, hi = anchors[max(j - 1, 0)], anchors[min(j + 1, n - 1)]
                row = {
                    "feature": all_labels.index(name), "anchor": anchors[j], "low": anchors[0], "high": anchors[-1],
                    "below_lo": lo, "below_w": (anchors[j] - lo) or 1.0, "below_valid": j > 0, "below_closed": j == 1,
                    "above_hi": hi, "above_w": (hi - anchors[j]) or 1.0, "above_valid": j < n - 1, "above_closed": j == 0,
                }
                for key, value in row.items():
                    rows.setdefault(key, []).append(value)

        def table(key: str) -> torch.Tensor:
            kind = torch.bool if isinstance(rows[key][0], bool) else dtype
            return torch.tensor(rows[key], dtype=kind if key != "feature" else torch.long, device=device)

        self.feature, self.anchor, self.low, self.high = (table(k) for k in ("feature", "anchor", "low", "high"))
        self.below_lo, self.below_w, self.below_valid, self.below_closed = (
            table(k) for k in ("below_lo", "below_w", "below_valid", "below_closed"))
        self.above_hi, self.above_w, self.above_valid, self.above_closed = (
            table(k) for k in ("above_hi", "above_w", "above_valid", "above_closed"))
        # Each phenotype blendshape is the product of a few variations (3 to 6 in anny 0.6.2):
        # their columns, padded with a column of ones, instead of a product over all 26.
        mask = a.stacked_phenotype_blend_shapes_mask.cpu() > 0.5
        width = int(mask.sum(1).max())
        ones = mask.shape[1]  # index of the column of ones appended to the variations
        factors = [torch.nonzero(row).flatten().tolist() for row in mask]
        self.factors = torch.tensor([f + [ones] * (width - len(f)) for f in factors], device=device)
        self.projection = a.phenotype_blendshape_projection
        self.n_local = len(a.local_change_labels)
        self.n_phenotypes = len(a.phenotype_labels)
        self.dtype, self.device = dtype, device

    def __call__(self, shape: torch.Tensor) -> torch.Tensor:
        s = shape.to(device=self.device, dtype=self.dtype)
        b = s.shape[0]
        phen, local = s[:, : self.n_phenotypes], s[:, self.n_phenotypes :]
        values = s.new_full((b, self.n_all), 0.5).index_copy(1, self.given, phen)
        race = values[:, self.race]
        race = torch.nan_to_num(race / race.sum(1, keepdim=True), 1 / 3, 1 / 3, 1 / 3)
        # Piecewise-linear interpolation (Anny's linear_interpolation_coefficients, values
        # clamped to the anchors' range the same way): a variation weighs alpha on the segment
        # below its anchor, 1 - alpha on the segment above, 0 elsewhere.
        v = values[:, self.feature]
        v = torch.where(v < self.low, self.low, v)
        v = torch.where(v > self.high, self.high, v)
        on_below = self.below_valid & ((v > self.below_lo) | (self.below_closed & (v == self.below_lo))) & (v <= self.anchor)
        on_above = self.above_valid & ((v > self.anchor) | (self.above_closed & (v == self.anchor))) & (v <= self.above_hi)
        below = (v - self.below_lo) / self.below_w
        above = 1.0 - (v - self.anchor) / self.above_w
        hat = torch.where(on_below, below, torch.where(on_above, above, torch.zeros_like(v)))
        variations = torch.cat([race, hat, torch.ones_like(race[:, :1])], dim=1)
        per_shape = variations[:, self.factors]  # (B, K, factors)
        wi = per_shape[..., 0]
        for i in range(1, per_shape.shape[-1]):
            wi = wi * per_shape[..., i]
        if self.projection is not None:
            wi = wi @ self.projection
        # Local changes: a positive and a negative part per change, interleaved, each written
        # as value * (value >= 0) so that the gradient at zero is 1 (Anny's choice).
        pos = local * (local >= 0).to(local.dtype)
        neg = -local * (-local >= 0).to(local.dtype)
        return torch.cat([wi, torch.stack([pos, neg], dim=2).reshape(b, 2 * self.n_local)], dim=1)
