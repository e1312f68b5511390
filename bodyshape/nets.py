"""Networks: a per-view CNN encoder, single-view regressors, and the fused two-view model.

All models share one class, :class:`BodyShapeNet`, configured by :class:`NetConfig`:
``views=("front",)`` or ``("side",)`` is a single-view regressor, ``("front", "side")``
the fused model. Every model also takes the person's height (metres), which fixes the
scale a silhouette alone cannot. Inputs: silhouettes ``(B, 1, H, W)`` in {0, 1}; the product
reads its coverage canvases through :class:`SubpixelReader`.
Output: shape parameters ``(B, N_SHAPE)`` (see :mod:`bodyshape.body_model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from bodyshape.body_model import N_SHAPE, SHAPE_LABELS, SHAPE_VERSION
from bodyshape.errors import BodyShapeError
from bodyshape.silhouette import BODY_HEIGHT_PX, BODY_THRESHOLD, CANVAS_HW, SUBPIXEL_PHASES

VIEWS = ("front", "side")

#: Height normalisation (metres): the network sees (height - mean) / std.
HEIGHT_MEAN, HEIGHT_STD = 1.70, 0.10


@dataclass
class NetConfig:
    views: tuple[str, ...] = VIEWS
    canvas_hw: tuple[int, int] = CANVAS_HW
    body_height_px: int = BODY_HEIGHT_PX
    widths: tuple[int, ...] = (24, 32, 48, 64, 96)  # one stride-2 stage each
    feature_dim: int = 256
    head_hidden: int = 256
    n_shape: int = N_SHAPE
    shape_labels: tuple[str, ...] = field(default=SHAPE_LABELS)
    shape_version: str = SHAPE_VERSION

    def __post_init__(self) -> None:
        self.views = tuple(self.views)
        self.canvas_hw = tuple(self.canvas_hw)
        self.widths = tuple(self.widths)
        self.shape_labels = tuple(self.shape_labels)
        if not self.views or any(v not in VIEWS for v in self.views):
            raise BodyShapeError(f"views must be a non-empty subset of {VIEWS}, got {self.views}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        return cls(**d)


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ViewEncoder(nn.Module):
    """Silhouette (B, 1, H, W) -> feature vector (B, feature_dim).

    Stride-2 stages halve the resolution; the final map is flattened rather than pooled,
    because *where* the outline bulges (waist vs hips) is the information we need.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for w in cfg.widths:
            layers += [_conv_bn(cin, w, 2), _conv_bn(w, w, 1)]
            cin = w
        self.conv = nn.Sequential(*layers)
        s = 2 ** len(cfg.widths)
        h, w = -(-cfg.canvas_hw[0] // s), -(-cfg.canvas_hw[1] // s)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * h * w, cfg.feature_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class BodyShapeNet(nn.Module):
    """Encoders for ``cfg.views`` + an MLP head over their features and the height."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict({v: ViewEncoder(cfg) for v in cfg.views})
        d = cfg.feature_dim * len(cfg.views) + 1
        self.head = nn.Sequential(
            nn.Linear(d, cfg.head_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.head_hidden, cfg.head_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.head_hidden, cfg.n_shape),
        )

    def forward(
        self, front: torch.Tensor | None, side: torch.Tensor | None, height_m: torch.Tensor
    ) -> torch.Tensor:
        inputs = {"front": front, "side": side}
        feats = []
        for v in self.cfg.views:
            x = inputs[v]
            if x is None:
                raise BodyShapeError(f"this model needs the {v} silhouette")
            feats.append(self.encoders[v](x))
        h = ((height_m.reshape(-1, 1).to(feats[0].dtype)) - HEIGHT_MEAN) / HEIGHT_STD
        return self.head(torch.cat(feats + [h], dim=1))


def subpixel_looks(silhouettes: torch.Tensor, phases: int = SUBPIXEL_PHASES) -> torch.Tensor:
    """Coverage canvases (B, H, W), values 0..255 (any dtype) -> (phases * B, 1, H, W) float32
    in {0, 1}, phase-major: look k is the body moved right by k / phases of a pixel, each pixel
    body where its coverage is at least half (look 0 is :func:`bodyshape.silhouette.body_pixels`).

    Why: a binary canvas rounds every edge to a whole pixel (1.5 cm of a 1.7 m body), and where
    it rounds to changes with the camera roll and the photo's resolution; averaging the
    network over the phases reads the sub-pixel edge instead (docs/evaluation.md). Moving an
    edge by a fraction of a pixel mixes each pixel with its left neighbour, which is exact for
    area coverage. The arithmetic is on integers (exact in float32, so ONNX Runtime, TensorRT
    and PyTorch threshold alike) and uses only Sub, Mul, Add and Clip (TensorRT takes them).
    """
    x = silhouettes.to(torch.float32)
    left = nn.functional.pad(x[..., :-1], (1, 0))
    return torch.cat([_look(x, left, k, phases) for k in range(phases)]).unsqueeze(1)


def subpixel_look(silhouettes: torch.Tensor, phase: torch.Tensor, phases: int = SUBPIXEL_PHASES) -> torch.Tensor:
    """Coverage canvases (B, H, W), values 0..255 -> (B, 1, H, W) float32 in {0, 1}: canvas b read
    at its own ``phase[b]`` (0 <= phase < phases), one of the looks of :func:`subpixel_looks`.

    Training reads coverage canvases this way, a phase drawn per sample, so the network learns on
    the same looks the served :class:`SubpixelReader` averages (docs/evaluation.md)."""
    x = silhouettes.to(torch.float32)
    left = nn.functional.pad(x[..., :-1], (1, 0))
    k = phase.to(device=x.device, dtype=torch.float32).reshape(-1, *([1] * (x.dim() - 1)))
    return _look(x, left, k, phases).unsqueeze(1)


def _look(x: torch.Tensor, left: torch.Tensor, k: int | torch.Tensor, phases: int) -> torch.Tensor:
    """The 0/1 body of coverage ``x`` moved right by ``k / phases`` of a pixel (``left``: ``x``
    moved by one whole pixel)."""
    mixed = (phases - k) * x + k * left  # phases * coverage of the moved body, an integer
    # body where mixed >= phases * BODY_THRESHOLD - phases / 2 (coverage >= 0.5 exactly at k = 0)
    return torch.clamp(mixed - (phases * BODY_THRESHOLD - phases // 2 - 1), 0.0, 1.0)


class SubpixelReader(nn.Module):
    """A fused :class:`BodyShapeNet` that reads coverage canvases: the shapes of the
    :func:`subpixel_looks` averaged. What the product serves (ONNX, Triton) and runs in process
    (:class:`bodyshape.reconstruct.LocalPredictor`); training reads the 0/1 body (look 0)."""

    def __init__(self, net: BodyShapeNet, phases: int = SUBPIXEL_PHASES) -> None:
        super().__init__()
        self.net, self.phases = net, phases

    def forward(self, front: torch.Tensor, side: torch.Tensor, height_m: torch.Tensor) -> torch.Tensor:
        """(B, H, W) coverage canvases 0..255 and heights (B,) metres -> shapes (B, N_SHAPE)."""
        f, s = subpixel_looks(front, self.phases), subpixel_looks(side, self.phases)
        h = height_m.reshape(1, -1).expand(self.phases, -1).reshape(-1)
        out = self.net(f, s, h)
        return out.reshape(self.phases, -1, self.net.cfg.n_shape).mean(0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
