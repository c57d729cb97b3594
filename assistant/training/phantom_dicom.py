"""Write a phantom case as a CT Image Storage series, the way a scanner would store it.

Storage follows the case's acquisition: int16 or uint16 pixels with its rescale
intercept, its pixel spacing and slice thickness, and Image Orientation/Position
(Patient) that carry the gantry tilt. The files pass dciodvfy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from assistant.training.phantoms import PhantomCase


def write_case(case: PhantomCase, folder: Path, patient_id: str | None = None) -> list[Path]:
    """Write `case` into `folder` (one file per slice); return the paths in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    acq = case.acquisition
    key = f"radassist-phantom-{case.seed}"
    study_uid = generate_uid(entropy_srcs=[key, "study"])
    series_uid = generate_uid(entropy_srcs=[key, "series"])
    frame_uid = generate_uid(entropy_srcs=[key, "frame"])
    rows, cols = case.hu.shape[1:]
    spacing = acq.pixel_spacing * 512 / cols
    tilt = math.radians(acq.gantry_tilt_degrees)
    column_direction = (0.0, math.cos(tilt), -math.sin(tilt))
    intercept = acq.rescale_intercept
    dtype = np.uint16 if acq.storage == "uint16" else np.int16
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    paths = []
    for index, (hu, z) in enumerate(zip(case.hu, acq.positions, strict=True)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[key, "slice", str(index)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{index + 1:04d}.dcm"
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\x00" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
            study_uid,
            series_uid,
            frame_uid,
        )
        ds.PositionReferenceIndicator = ""
        ds.PatientName = f"PHANTOM^{case.seed}"
        ds.PatientID = patient_id or f"PH{case.seed:08d}"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate, ds.StudyTime = "20261122", "120000"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = (
            f"A{case.seed:08d}"[:16],
            "1",
            "",
        )
        ds.StudyDescription = "CT HEAD WITHOUT CONTRAST"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 2, index + 1
        ds.SeriesDescription, ds.BodyPartExamined = "HEAD SYNTHETIC PHANTOM", "HEAD"
        ds.PatientPosition, ds.AcquisitionNumber = "HFS", 1
        ds.Manufacturer, ds.ManufacturerModelName = "radassist", "phantom generator"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, *(round(v, 8) for v in column_direction)]
        # The table moves along z; with a tilted gantry the image plane leans, and the
        # table advance is set so that slices are `positions` apart along the normal.
        x0, y0 = -spacing * cols / 2, -spacing * rows / 2 * math.cos(tilt)
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(float(z) / math.cos(tilt), 4)]
        ds.GantryDetectorTilt = round(acq.gantry_tilt_degrees, 2)
        ds.SliceThickness = round(acq.slice_thickness, 3)
        ds.PixelSpacing = [round(spacing, 6), round(spacing, 6)]
        ds.KVP, ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 120, intercept, 1, "HU"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0 if dtype is np.uint16 else 1
        ds.WindowCenter, ds.WindowWidth = 40, 80
        stored = np.clip(np.round(hu - intercept), low, high).astype(dtype)
        ds.PixelData = stored.tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
