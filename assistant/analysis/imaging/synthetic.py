"""A small synthetic CT series: for the worker's warm-up, tests and benchmarks.

A water cylinder with a skull-like rim, 512², 24 contiguous 5 mm slices, written as
valid CT Image Storage files. The phantom generator (assistant/training) makes
realistic heads; this only needs to be a series the node accepts, completes and reads,
and it needs nothing from the training package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROWS = COLUMNS = 512
PIXEL_SPACING_MM = 0.45
SLICE_SPACING_MM = 5.0


def _slice_pixels(index: int, count: int) -> np.ndarray:
    y, x = np.mgrid[:ROWS, :COLUMNS]
    r = np.hypot(x - COLUMNS / 2, y - ROWS / 2) * PIXEL_SPACING_MM
    radius = 85.0 * np.sqrt(max(0.05, 1 - ((index - count / 2) / (count / 1.6)) ** 2))
    hu = np.full((ROWS, COLUMNS), -1000.0)
    hu[r < radius] = 1200.0
    hu[r < radius - 6] = 35.0
    rng = np.random.default_rng(index)
    hu += rng.normal(0, 5, hu.shape)
    return (hu + 1024).clip(0, 4095).astype(np.uint16)


def write_demo_series(folder: Path, count: int = 24, seed: int = 0) -> list[Path]:
    """Write `count` slices of one new series into `folder`; return the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(entropy_srcs=["radassist-demo-study", str(seed)])
    series_uid = generate_uid(entropy_srcs=["radassist-demo-series", str(seed)])
    paths = []
    for index in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(index)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{index + 1:04d}.dcm"
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\x00" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame"])
        ds.PositionReferenceIndicator = ""
        ds.PatientName, ds.PatientID = "DEMO^PHANTOM", "DEMO0001"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261122", "120000", "DEMO0001"
        ds.StudyID, ds.ReferringPhysicianName = "1", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, index + 1
        ds.SeriesDescription, ds.BodyPartExamined = "DEMO HEAD", "HEAD"
        ds.PatientPosition, ds.AcquisitionNumber, ds.Manufacturer = "HFS", 1, "radassist"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-115.0, -115.0, -index * SLICE_SPACING_MM]
        ds.SliceThickness, ds.PixelSpacing = SLICE_SPACING_MM, [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
        ds.KVP, ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 120, -1024, 1, "HU"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 40, 80
        ds.PixelData = _slice_pixels(index, count).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
