"""A CT series folder → the model's probabilities, flagged slices and lesion outlines.

The series is streamed in batches: each batch is decoded, resampled, windowed and
encoded by the CNN before the next is read, so a 1,000-slice series never sits in
memory at full size. The GRU then reads the per-slice features as one sequence.

A TorchScript model (assistant/analysis/model/torchscript.py) is one program over the
whole study, so its batches, prepared the same way, are joined and read in one call; its
outputs are checked against the contract. From the probabilities on, both formats take
the same path: threshold, flagged slices, lesions, their anatomy.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from assistant.analysis.anatomy.lesions import ANATOMY_SIZE, locate_lesions
from assistant.analysis.imaging import SeriesGeometry, read_series
from assistant.analysis.imaging.cavity import intracranial_mask
from assistant.analysis.imaging.gaps import find_gaps, gap_notes
from assistant.analysis.imaging.series import SliceInfo
from assistant.analysis.model.folder import LoadedModel
from assistant.analysis.model.network import fused_for_inference
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability

logger = logging.getLogger(__name__)

#: Lesions smaller than this (mL) are dropped as noise.
MIN_LESION_ML = 0.05
OUTLINE_POINTS = 32


def _outline(component: np.ndarray, scale: float) -> list[tuple[float, float]]:
    """A polygon around a 2D component, in image pixels: along each of `OUTLINE_POINTS`
    rays from its centroid, the farthest point where the mask, read bilinearly, is half in.

    The mask is coarse (a pixel is several mm), so this follows the mid-points of its
    edges and cuts its corners; taking the farthest whole pixel in each ray's sector
    instead gave inward spikes wherever a sector held no rim pixel."""
    rows, cols = np.nonzero(component)
    cy, cx = rows.mean(), cols.mean()
    reach = float(np.hypot(rows - cy, cols - cx).max()) + 1.5
    theta = -math.pi + 2 * math.pi * np.arange(OUTLINE_POINTS) / OUTLINE_POINTS
    steps = np.arange(0.0, reach, 1 / 32)
    ys = cy + np.sin(theta)[:, None] * steps
    xs = cx + np.cos(theta)[:, None] * steps
    inside = ndimage.map_coordinates(component.astype(np.float32), [ys, xs], order=1) >= 0.5
    # The last step still inside along each ray (the centroid of a crescent may lie
    # outside it; a ray that never enters keeps a point at the centroid).
    last = np.where(inside.any(axis=1), steps.size - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    radius = steps[last]
    return [
        ((x + 0.5) * scale, (y + 0.5) * scale)
        for x, y in zip(cx + radius * np.cos(theta), cy + radius * np.sin(theta), strict=True)
    ]


@torch.inference_mode()
def predict_series(
    loaded: LoadedModel,
    folder: Path | SeriesGeometry,
    batch: int = 32,
    threads: int | None = None,
) -> Findings:
    """Run the model over one series folder (or a series already read from one)."""
    if threads:
        torch.set_num_threads(threads)
    card = loaded.card
    program, network = loaded.program, None
    if program is None:
        network = fused_for_inference(loaded.require_network())
        # In place (Module.to returns self). Module.to(memory_format=...) is documented, but
        # torch's overloads for to() omit it.
        network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    series = folder if isinstance(folder, SeriesGeometry) else read_series(folder)
    size = card.image_size
    features, lesion_pixels = [], []

    buffer = series.pixel_buffer()  # used by the one decode thread only
    # What the anatomy reads to locate lesions, kept while the slices are decoded for the
    # model: 128² HU and cavity are 80 kB a slice (24 MB for 300 slices).
    kept_hu = np.empty((len(series.slices), ANATOMY_SIZE, ANATOMY_SIZE), dtype=np.float32)
    kept_cavity = np.empty(kept_hu.shape, dtype=bool)

    def prepare(start: int) -> torch.Tensor:
        count = min(batch, len(series.slices) - start)
        x = np.empty((count, len(card.windows), size, size), dtype=np.float32)
        for i in range(count):
            series.model_slice(
                start + i,
                size,
                card.windows,
                card.input_mask,
                x[i],
                buffer,
                keep_hu=kept_hu[start + i],
                keep_cavity=kept_cavity[start + i],
            )
        return torch.from_numpy(x).contiguous(memory_format=torch.channels_last)

    # Decode the next batch in a thread while the CNN runs on this one (both release
    # the GIL for most of their work): the two stages overlap instead of adding up.
    starts = list(range(0, len(series.slices), batch))
    if program is not None:
        # A program reads the whole study at once: its input is every batch, joined.
        stack = torch.cat(list(_prepared(prepare, starts))).contiguous()
        study_probability, slice_probability, masks = _run_program(program, stack)
        if masks is not None:
            lesion_pixels.append(_lesion_pixels(stack, _fitted(masks, size), card.input_mask))
    elif network is not None:
        for x in _prepared(prepare, starts):
            encoded, masks = network.encode(x)
            features.append(encoded)
            if masks is not None:
                lesion_pixels.append(_lesion_pixels(x, masks, card.input_mask))
        study_logit, slice_logits = network.read(torch.cat(features)[None])
        study_probability = float(torch.sigmoid(study_logit)[0])
        slice_probability = torch.sigmoid(slice_logits[0]).numpy()
    positive = study_probability >= card.threshold
    flagged = list(  # an instance once, however many of its frames are flagged
        dict.fromkeys(
            s.sop_instance_uid
            for s, p in zip(series.slices, slice_probability, strict=True)
            if p >= card.slice_threshold
        )
    )
    lesions: list[Lesion] = []
    labels = None
    located = None
    if positive and lesion_pixels:
        lesions, labels = _lesions(
            series, np.concatenate(lesion_pixels), slice_probability, size, card.input_mask
        )
    if lesions and labels is not None:
        try:
            located = locate_lesions(series, kept_hu, kept_cavity, labels, lesions)
            lesions = located.lesions
        except Exception:  # where a lesion lies adds to the verdict; it must not lose it
            logger.exception("lesions of series %s not located", series.series_instance_uid)
    return Findings(
        series_instance_uid=series.series_instance_uid,
        study_probability=study_probability,
        positive=positive,
        threshold=card.threshold,
        slices=[
            SliceProbability(s.sop_instance_uid, float(p), s.frame_number)
            for s, p in zip(series.slices, slice_probability, strict=True)
        ],
        flagged_instance_uids=flagged if positive else [],
        lesions=lesions,
        model=ModelIdentity(card.name, card.version, card.weights_sha256),
        notes=reading_notes(series),
        slice_threshold=card.slice_threshold,
        lesion_labels=labels if lesions else None,
        midline_shift_mm=located.midline_shift_mm if located else None,
        anatomy_read=located.anatomy_read if located else False,
    )


def _prepared(prepare: Callable[[int], torch.Tensor], starts: list[int]) -> Iterator[torch.Tensor]:
    """The batches starting at `starts`, the next one decoded in a thread while the
    caller works on this one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(prepare, starts[0])
        for position in range(len(starts)):
            x = pending.result()
            if position + 1 < len(starts):
                pending = pool.submit(prepare, starts[position + 1])
            yield x


def _lesion_pixels(x: torch.Tensor, masks: torch.Tensor, input_mask: str) -> np.ndarray:
    """Mask pixels in a lesion (bool, per slice), from the slices' mask logits."""
    # A probability of 0.5 or more is a logit of 0 or more: keep only that.
    found = masks >= 0
    if input_mask:  # never outline what the model was not shown
        found &= _shown(x, masks.shape[-1])
    return found.numpy()


CONTRACT = (
    "the contract is (study probability [] or [1], slice probabilities [N], "
    "mask logits [N, H, W] or an empty tensor), float, probabilities in [0, 1] "
    "(see assistant/analysis/model/torchscript.py)"
)


def _run_program(
    program: torch.jit.ScriptModule, stack: torch.Tensor
) -> tuple[float, np.ndarray, torch.Tensor | None]:
    """A TorchScript model's study probability, slice probabilities and mask logits (None
    when it gives none) for a stack of N slices; ValueError when they break the contract."""
    count = len(stack)
    out = program(stack)
    if (
        not isinstance(out, tuple | list)
        or len(out) != 3
        or not all(isinstance(t, torch.Tensor) for t in out)
    ):
        raise ValueError(f"the TorchScript model returned {_described(out)}; {CONTRACT}")
    study, slices, masks = (t.detach().cpu() for t in out)
    fits = (
        all(t.is_floating_point() for t in (study, slices, masks))
        and tuple(study.shape) in ((), (1,))
        and tuple(slices.shape) == (count,)
        and (
            masks.numel() == 0
            or (masks.dim() == 3 and masks.shape[0] == count and min(masks.shape[1:]) > 0)
        )
    )
    if not fits:
        raise ValueError(
            f"the TorchScript model returned {_described(out)} for {count} slices; {CONTRACT}"
        )
    probabilities = torch.cat((study.reshape(1), slices)).float()
    if not bool(((probabilities >= 0) & (probabilities <= 1)).all()):
        raise ValueError(
            "the TorchScript model returned probabilities outside [0, 1] (logits, not "
            f"probabilities after the sigmoid?); {CONTRACT}"
        )
    return (
        float(probabilities[0]),
        probabilities[1:].numpy(),
        masks.float() if masks.numel() else None,
    )


def _described(out: object) -> str:
    """What a program returned, for an error message: types, and shapes of tensors."""
    if isinstance(out, torch.Tensor):
        return f"a {str(out.dtype).removeprefix('torch.')} tensor of shape {list(out.shape)}"
    if isinstance(out, tuple | list):
        parts = ", ".join(_described(item) for item in out)
        return f"a {type(out).__name__} of {len(out)} ({parts})"
    return f"a {type(out).__name__}"


def _fitted(masks: torch.Tensor, size: int) -> torch.Tensor:
    """A program's mask logits as the lesion code reads ours: square, a whole number of
    input pixels per mask pixel. Such a size is kept; any other is resized to size²."""
    height, width = masks.shape[-2:]
    if height == width and size % height == 0:
        return masks
    return torch.nn.functional.interpolate(
        masks[:, None], size=(size, size), mode="bilinear", align_corners=False
    )[:, 0]


def reading_notes(series: SeriesGeometry) -> list[str]:
    """What a reader must know of what was read: holes in the volume (see
    assistant.analysis.imaging.gaps), then what was left out of the series' files and why,
    one sentence each (none when the whole series was read with no hole)."""
    notes = gap_notes(
        series.positions,
        [_images_in_acquisition(s) for s in series.slices],
        left_out=len(series.skipped),
    )
    if series.skipped:
        counts = Counter(reason for _, reason in series.skipped)
        total = len(series.slices) + len(series.skipped)
        left_out = "; ".join(f"{reason}: {count}" for reason, count in sorted(counts.items()))
        notes.append(f"Read {len(series.slices)} of {total} images; left out {left_out}")
    return notes


def _images_in_acquisition(info: SliceInfo) -> int | None:
    try:
        value = info.header.get("ImagesInAcquisition") if info.header is not None else None
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _shown(x: torch.Tensor, mask_size: int) -> torch.Tensor:
    """Mask pixels mostly inside what the input mask left (blanked pixels read 0 in every
    window; inside the skull only air does), at the mask's size."""
    shown = (x.amax(dim=1, keepdim=True) > 0).float()
    return torch.nn.functional.adaptive_avg_pool2d(shown, mask_size)[:, 0] > 0.5


def _lesions(
    series: SeriesGeometry,
    masks: np.ndarray,
    slice_probability: np.ndarray,
    size: int,
    input_mask: str = "",
) -> tuple[list[Lesion], np.ndarray]:
    """Connected components of the lesion masks (bool, per slice), measured in mm, surest first,
    with a label volume in which lesion k (1-based, in that order) has label k.

    Mean HU is taken on the key slice at the model's input size, read again: keeping
    every slice's HU for the few key slices cost more than the read."""
    mask_size = masks.shape[-1]
    to_input = size / mask_size  # mask pixel → model input pixel
    to_image = series.columns / size  # model input pixel → original image pixel
    pixel_mm = series.pixel_spacing[0] * to_image * to_input
    spacing = np.diff(series.positions)
    for gap in find_gaps(series.positions):  # a slice beside a hole is not thicker for it
        spacing[gap.after_index] /= gap.missing + 1
    thickness = (
        np.concatenate([spacing[:1], (spacing[:-1] + spacing[1:]) / 2, spacing[-1:]])
        if len(spacing)
        else np.array([1.0])
    )
    labelled, count = ndimage.label(masks)
    found = []
    for index in range(1, count + 1):
        component = labelled == index
        areas = component.reshape(len(component), -1).sum(axis=1) * pixel_mm**2
        volume_ml = float((areas * thickness).sum() / 1000.0)
        if volume_ml < MIN_LESION_ML:
            continue
        slices = np.flatnonzero(areas)
        key = int(slices[np.argmax(areas[slices])])
        key_mask = component[key]
        outline = _outline(key_mask, to_input * to_image)
        points = np.array(outline)
        diameter = (
            float(np.max(np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))))
            * series.pixel_spacing[0]
        )
        upsampled = (
            np.kron(key_mask, np.ones((int(to_input), int(to_input)), dtype=bool))
            if to_input >= 1
            else key_mask
        )
        key_hu = series.hu_resized(key, size)
        if input_mask:  # bone that shares a mask pixel with the lesion is not its density
            inside = upsampled & intracranial_mask(key_hu, series.pixel_spacing[1] * to_image)
            upsampled = inside if inside.any() else upsampled
        mean_hu = float(key_hu[upsampled].mean())
        found.append(
            Lesion(
                first_slice=int(slices[0]),
                last_slice=int(slices[-1]),
                key_slice=key,
                key_sop_instance_uid=series.slices[key].sop_instance_uid,
                key_frame_number=series.slices[key].frame_number,
                outline=[(round(x, 1), round(y, 1)) for x, y in outline],
                area_mm2=round(float(areas[key]), 1),
                longest_diameter_mm=round(diameter, 1),
                volume_ml=round(volume_ml, 2),
                mean_hu=round(mean_hu, 1),
                probability=round(float(slice_probability[slices].max()), 4),
                label=index,
            )
        )
    # The finding the model is surest of first (its key slice is the study's key image);
    # of equally sure ones, the largest.
    found.sort(key=lambda lesion: (-lesion.probability, -lesion.volume_ml))
    kept = [replace(lesion, label=rank) for rank, lesion in enumerate(found[:255], start=1)]
    rank_of_label = np.zeros(count + 1, dtype=np.uint8)  # dropped components map to 0
    for lesion, ranked in zip(found, kept, strict=False):
        rank_of_label[lesion.label] = ranked.label
    return kept, rank_of_label[labelled]
