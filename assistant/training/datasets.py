"""Datasets of studies for training and evaluation, named by a SPEC string.

    synthetic[:N[,OPTION=VALUE...]]
                           N generated head-CT phantoms (default 240), half with blood;
                           options positive=FRACTION (e.g. 0.05 for a rare finding),
                           size=PIXELS (default 256), slices=COUNT (default 32),
                           lesions=MIN-MAX (lesion diameters in mm, default 3-40),
                           density=MIN-MAX (their HU, default 50-90 acute blood; 45-55
                           is faint, low-contrast blood) and mask=intracranial (blank what lies outside the skull, in
                           training and, through the model card, at inference)
    medmnist:PATH.npz      a MedMNIST 3D file (AdrenalMNIST3D): its own train/val/test
    dicom:DIR:LABELS.csv   DICOM series folders under DIR with a CSV of labels; split by
                           patient (never by slice or series), 70/15/15

A study is a sequence of slices (S, C, H, W) in [0, 1] with a study label and, where
the data has them, per-slice labels and blood masks.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from assistant.analysis.imaging import (
    DEFAULT_WINDOWS,
    INPUT_MASKS,
    UnreadableSeries,
    apply_input_mask,
    read_series,
    to_windows,
)
from assistant.training.phantoms import MATRIX, make_case

SPLITS = ("train", "val", "test")
SYNTHETIC_DEFAULT_COUNT = 240
#: Seeds of the three synthetic splits never overlap.
_SPLIT_SEED_BASE = {"train": 0, "val": 10_000_000, "test": 20_000_000}
_FRESH_SEED_BASE = 1 << 41  # seeds of replacement training cases: above every split's


class DatasetSpecError(ValueError):
    """A dataset SPEC that cannot be read."""


@dataclass
class Study:
    key: str
    #: (S, C, H, W) float32 in [0, 1].
    slices: np.ndarray
    label: int
    slice_labels: np.ndarray | None = None
    #: (S, H, W) bool at full input resolution.
    masks: np.ndarray | None = None


class StudyDataset:
    """A split of studies; `views` gives the test-time views of one study."""

    name: str
    in_channels: int
    image_size: int
    #: What is blanked before the windows (assistant.analysis.imaging.cavity); the card keeps it.
    input_mask: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Study:
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        raise NotImplementedError

    def views(self, index: int) -> list[Study]:
        return [self[index]]

    def training_view(self, index: int, rng: np.random.Generator) -> Study:
        return self[index]


class RoutedStudies(StudyDataset):
    """Studies that live in other datasets: `_locate` says which dataset holds a study
    and at what index, and every way of reading it (plain, test-time views, training
    view) is that dataset's own."""

    def _locate(self, index: int) -> tuple[StudyDataset, int]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Study:
        part, local = self._locate(index)
        return part[local]

    def views(self, index: int) -> list[Study]:
        part, local = self._locate(index)
        return part.views(local)

    def training_view(self, index: int, rng: np.random.Generator) -> Study:
        part, local = self._locate(index)
        return part.training_view(local, rng)


class MixedStudies(RoutedStudies):
    """Several datasets' studies as one (fine-tuning on a site's reviewed series with a
    replay of what the model learnt from, so that learning the new does not forget the
    rest). They must be read alike: channels, image size, input mask."""

    def __init__(self, parts: Sequence[StudyDataset]) -> None:
        first = parts[0]
        for part in parts[1:]:
            if (part.in_channels, part.image_size, part.input_mask) != (
                first.in_channels,
                first.image_size,
                first.input_mask,
            ):
                raise DatasetSpecError(
                    f"{part.name} is read at {part.image_size} px, mask "
                    f"{part.input_mask or 'none'}; {first.name} at {first.image_size} px, "
                    f"mask {first.input_mask or 'none'}: give them the same size and mask"
                )
        self.parts = list(parts)
        self.name = " + ".join(part.name for part in parts)
        self.in_channels = first.in_channels
        self.image_size = first.image_size
        self.input_mask = first.input_mask
        self._starts = np.cumsum([0, *(len(part) for part in parts)])

    def _locate(self, index: int) -> tuple[StudyDataset, int]:
        which = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.parts[which], index - int(self._starts[which])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def labels(self) -> np.ndarray:
        return np.concatenate([part.labels() for part in self.parts])


class SyntheticHeads(StudyDataset):
    """Generated head CTs at 256 x 256 (the model's input), windowed like real ones."""

    in_channels = 3

    def __init__(
        self,
        count: int,
        split: str,
        positive_fraction: float = 0.5,
        max_slices: int = 32,
        image_size: int = 256,
        lesion_sizes: tuple[float, float] = (3.0, 40.0),
        lesion_densities: tuple[float, float] = (50.0, 90.0),
        refresh: float = 0.0,
        input_mask: str = "",
    ) -> None:
        self.lesion_sizes = lesion_sizes
        self.lesion_densities = lesion_densities
        self.input_mask = input_mask
        #: Share of training cases replaced by new ones each time they are drawn.
        self.refresh = refresh
        self.name = f"synthetic:{count}"
        self.image_size = image_size
        share = {"train": 0.7, "val": 0.15, "test": 0.15}[split]
        self.count = max(2, round(count * share))
        self.split = split
        self.max_slices = max_slices
        rng = np.random.default_rng(_SPLIT_SEED_BASE[split] + 7)
        self._labels = (rng.random(self.count) < positive_fraction).astype(int)
        self._labels[:2] = (0, 1)  # both classes in every split
        self._cache: dict[int, Study] = {}

    def __len__(self) -> int:
        return self.count

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def _generate(self, seed: int, positive: bool) -> Study:
        case = make_case(
            seed,
            positive,
            max_slices=self.max_slices,
            matrix=self.image_size,
            lesion_sizes=self.lesion_sizes,
            lesion_densities=self.lesion_densities,
        )
        pixel_mm = case.acquisition.pixel_spacing * MATRIX / self.image_size
        slices = np.stack(
            [
                to_windows(apply_input_mask(hu, self.input_mask, pixel_mm), DEFAULT_WINDOWS)
                for hu in case.hu
            ]
        )
        return Study(
            key=f"synthetic-{seed}",
            slices=(slices * 255).round().astype(np.uint8),  # 4x less memory while cached
            label=int(case.label),
            slice_labels=case.slice_labels.astype(np.float32),
            masks=case.mask,
        )

    def __getitem__(self, index: int) -> Study:
        if index not in self._cache:
            seed = _SPLIT_SEED_BASE[self.split] + index
            self._cache[index] = self._generate(seed, bool(self._labels[index]))
        cached = self._cache[index]
        return Study(
            cached.key,
            cached.slices.astype(np.float32) / 255.0,
            cached.label,
            cached.slice_labels,
            cached.masks,
        )

    def training_view(self, index: int, rng: np.random.Generator) -> Study:
        if self.refresh and index in self._cache and rng.random() < self.refresh:
            # A new case in place of an old one: the model never sees the same few
            # hundred heads too often (synthetic data is free; overfitting is not).
            seed = _FRESH_SEED_BASE + int(rng.integers(1 << 40))
            self._cache[index] = self._generate(seed, bool(self._labels[index]))
        study = self[index]
        if rng.random() < 0.5:  # left-right mirror: blood is as likely on either side
            study.slices = study.slices[..., ::-1].copy()
            if study.masks is not None:
                study.masks = study.masks[..., ::-1].copy()
        return study


class MedMNIST3D(StudyDataset):
    """A MedMNIST 3D split: each volume read as a sequence of 2D slices along one axis.

    Training reads each volume along a random axis with random flips; evaluation
    averages the three axes (a 2.5D reading of a 3D shape). A second channel holds each
    voxel's 3D distance to the shape's surface, so a slice also says how thick the
    shape is across the slices it cannot see.
    """

    in_channels = 2
    #: Distances (voxels) are divided by this, to keep the channel near [0, 1].
    distance_scale = 8.0

    def __init__(self, path: Path, split: str) -> None:
        if not path.is_file():
            raise DatasetSpecError(f"{path} does not exist")
        with np.load(path) as data:
            self.volumes = data[f"{split}_images"]
            self._labels = data[f"{split}_labels"].reshape(-1).astype(int)
        self.name = f"medmnist:{path.name}"
        self.image_size = int(self.volumes.shape[-1])
        # Computed once (4.4 s and 104 MB for the 1,188 training volumes at 28³; 8x the
        # memory at 64³): every epoch reads every volume, and computing it per read made
        # an epoch a quarter slower.
        self.distances = np.zeros(self.volumes.shape, np.float32)
        for index, volume in enumerate(self.volumes):
            self.distances[index] = ndimage.distance_transform_edt(volume > 127)
        self.distances /= np.float32(self.distance_scale)

    def __len__(self) -> int:
        return len(self.volumes)

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def _study(self, index: int, channels: np.ndarray) -> Study:
        """`channels` (2, S, H, W), as `_channels` gives them, read along axis 1."""
        slices = np.ascontiguousarray(np.moveaxis(channels, 0, 1))
        return Study(f"{self.name}#{index}", slices, int(self._labels[index]))

    def _channels(self, index: int) -> np.ndarray:
        """(2, D, H, W): the volume in [0, 1], and each voxel's scaled distance to the
        nearest voxel outside the shape."""
        scaled = self.volumes[index].astype(np.float32) / np.float32(255.0)
        return np.stack((scaled, self.distances[index]))

    def __getitem__(self, index: int) -> Study:
        return self._study(index, self._channels(index))

    def views(self, index: int) -> list[Study]:
        channels = self._channels(index)
        return [self._study(index, np.moveaxis(channels, axis + 1, 1)) for axis in range(3)]

    def training_view(self, index: int, rng: np.random.Generator) -> Study:
        channels = np.moveaxis(self._channels(index), int(rng.integers(3)) + 1, 1)
        for axis in range(1, 4):
            if rng.random() < 0.5:
                channels = np.flip(channels, axis)
        if rng.random() < 0.5:
            channels = np.swapaxes(channels, 2, 3)
        return self._study(index, channels)


def _patient_split(patient: str) -> str:
    bucket = int(hashlib.sha256(patient.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "val" if bucket < 85 else "test"


class DicomFolders(StudyDataset):
    """Series folders under a root with labels in a CSV (columns: series, label and
    optionally patient, first_slice and last_slice). Rows of one patient always land in
    the same split. A row's first_slice-last_slice (1-based, inclusive, along the stack)
    gives per-slice labels: 1 inside, 0 elsewhere; a negative row without a range has
    every slice 0 when the columns are there; otherwise a study has no slice labels."""

    in_channels = 3
    image_size = 256

    def __init__(self, root: Path, labels_csv: Path, split: str) -> None:
        if not root.is_dir() or not labels_csv.is_file():
            raise DatasetSpecError(f"need a folder and a CSV: {root}, {labels_csv}")
        with labels_csv.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"series", "label"} <= set(rows[0]):
            raise DatasetSpecError(
                f"{labels_csv} needs columns 'series' and 'label' (and optionally 'patient')"
            )
        self.rows = [r for r in rows if _patient_split(r.get("patient") or r["series"]) == split]
        self.root = root
        self.name = f"dicom:{root.name}"

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        return np.array([int(r["label"]) for r in self.rows])

    def __getitem__(self, index: int) -> Study:
        row = self.rows[index]
        try:
            series = read_series(self.root / row["series"])
        except UnreadableSeries as exc:  # say which row, so the CSV can be mended
            raise DatasetSpecError(f"series {row['series']!r} cannot be read: {exc}") from exc
        slices = np.concatenate(list(series.batches(self.image_size, input_mask=self.input_mask)))
        label = int(row["label"])
        return Study(row["series"], slices, label, self._slice_labels(row, label, len(slices)))

    @staticmethod
    def _slice_labels(row: dict[str, str], label: int, count: int) -> np.ndarray | None:
        """Per-slice labels of a row from its first_slice and last_slice (1-based,
        inclusive); all 0 for a negative row with the columns but no range; else None."""
        first, last = (row.get("first_slice") or "").strip(), (row.get("last_slice") or "").strip()
        if not first and not last:
            return np.zeros(count, np.float32) if label == 0 and "first_slice" in row else None
        try:
            low, high = int(first), int(last)
        except ValueError:
            low = high = 0
        if not 1 <= low <= high <= count:
            raise DatasetSpecError(
                f"series {row['series']!r}: slices {first or '?'}-{last or '?'} are not a range "
                f"within its {count} slices (1-based, first <= last)"
            )
        labels = np.zeros(count, np.float32)
        labels[low - 1 : high] = 1.0
        return labels


def _min_max(text: str) -> tuple[float, float]:
    low, separator, high = text.partition("-")
    if not separator:
        raise ValueError(f"{text!r} is not MIN-MAX")
    return float(low), float(high)


#: Each option's parser: text to a float, int, (min, max) or str.
_SYNTHETIC_OPTIONS: dict[str, Callable[[str], Any]] = {
    "positive": float,
    "size": int,
    "slices": int,
    "lesions": _min_max,
    "density": _min_max,
    "mask": str,
}


def _synthetic(rest: str, split: str) -> SyntheticHeads:
    count_text, *options = rest.split(",") if rest else [""]
    try:
        count = int(count_text) if count_text else SYNTHETIC_DEFAULT_COUNT
        values = {}
        for option in options:
            key, _, value = option.partition("=")
            if key not in _SYNTHETIC_OPTIONS:
                raise DatasetSpecError(
                    f"unknown synthetic option {key!r}: use {', '.join(_SYNTHETIC_OPTIONS)}"
                )
            values[key] = _SYNTHETIC_OPTIONS[key](value)
    except ValueError as exc:
        raise DatasetSpecError(
            f"synthetic[:N[,positive=F,size=PX,slices=S,lesions=MIN-MAX,density=MIN-MAX,mask=intracranial]] cannot read {rest!r}: "
            f"{exc}"
        ) from exc
    positive = values.get("positive", 0.5)
    low, high = values.get("lesions", (3.0, 40.0))
    densities = values.get("density", (50.0, 90.0))
    if (
        not 0 < positive < 1
        or values.get("size", 256) < 32
        or values.get("slices", 32) < 2
        or not 1 <= low <= high <= 80
        or not 20 <= densities[0] <= densities[1] <= 150
        or values.get("mask", "") not in INPUT_MASKS
    ):
        raise DatasetSpecError(f"synthetic options out of range: {rest!r}")
    return SyntheticHeads(
        count,
        split,
        positive_fraction=positive,
        image_size=int(values.get("size", 256)),
        max_slices=int(values.get("slices", 32)),
        lesion_sizes=(low, high),
        lesion_densities=densities,
        refresh=0.2 if split == "train" else 0.0,
        input_mask=values.get("mask", ""),
    )


def parse_spec(spec: str, split: str) -> StudyDataset:
    """The dataset a SPEC names, for one split."""
    if split not in SPLITS:
        raise DatasetSpecError(f"split must be one of {SPLITS}, not {split!r}")
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        return _synthetic(rest, split)
    if kind == "medmnist":
        return MedMNIST3D(Path(rest), split)
    if kind == "dicom":
        folder, _, labels = rest.rpartition(":")
        if not folder:
            raise DatasetSpecError("dicom:DIR:LABELS.csv needs both a folder and a CSV")
        return DicomFolders(Path(folder), Path(labels), split)
    raise DatasetSpecError(
        f"unknown dataset {spec!r}: use synthetic[:N[,OPTIONS]], medmnist:PATH.npz or "
        "dicom:DIR:LABELS.csv"
    )
