"""The step between the model's masks and the findings: every lesion placed, and a series
that cannot be placed keeps its verdict."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from assistant.analysis.anatomy import lesions as anatomy_lesions
from assistant.analysis.anatomy.lesions import ANATOMY_SIZE, anatomy_slices, locate_lesions
from assistant.analysis.imaging import SeriesGeometry, read_series
from assistant.analysis.inference import predict as predict_module
from assistant.analysis.inference import predict_series
from assistant.analysis.model.folder import load_model
from assistant.cli import _bundled_model
from assistant.findings import Lesion
from assistant.training.demo import DEMO_HEAD_SEED, write_demo_head
from assistant.training.phantoms import make_case


@pytest.fixture(scope="module")
def demo_series(tmp_path_factory: pytest.TempPathFactory) -> SeriesGeometry:
    folder = tmp_path_factory.mktemp("demo-head")
    write_demo_head(folder)
    return read_series(folder)


def _demo_lesion(series: SeriesGeometry, label: int = 1) -> tuple[Lesion, np.ndarray]:
    """The demo phantom's blood as the label volume at a mask head's 32², and a lesion
    record for it."""
    case = make_case(DEMO_HEAD_SEED, positive=True, max_slices=32, lesion_sizes=(18.0, 35.0))
    blood = case.mask.reshape(len(case.mask), 32, 16, 32, 16).mean(axis=(2, 4)) >= 0.5
    order = np.argsort([s.position for s in series.slices])  # the series reads by position
    labels = np.where(blood[order], label, 0).astype(np.uint8)
    slices = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    key = int(slices[len(slices) // 2])
    lesion = Lesion(
        first_slice=int(slices[0]),
        last_slice=int(slices[-1]),
        key_slice=key,
        key_sop_instance_uid=series.slices[key].sop_instance_uid,
        outline=[(1.0, 1.0), (5.0, 1.0), (3.0, 4.0)],
        area_mm2=300.0,
        longest_diameter_mm=25.0,
        volume_ml=8.0,
        mean_hu=80.0,
        probability=0.97,
        label=label,
    )
    return lesion, labels


def test_a_mask_at_the_mask_heads_size_is_placed_on_the_anatomy_grid(
    demo_series: SeriesGeometry,
) -> None:
    """The demo phantom's lesion lies at head x = -7 mm (the patient's right: LPS +x is
    the left), 18 mm in front of the centre, high in the head."""
    lesion, labels = _demo_lesion(demo_series)
    hu, cavity = anatomy_slices(demo_series)
    assert hu.shape == cavity.shape == (len(demo_series.slices), ANATOMY_SIZE, ANATOMY_SIZE)
    located = locate_lesions(demo_series, hu, cavity, labels, [lesion])
    assert located.anatomy_read
    (placed,) = located.lesions
    assert placed.place is not None
    assert (placed.place.side, placed.place.compartment) == ("right", "supratentorial")
    assert placed.place.relation == "intra-axial"
    assert placed.abc2_volume_ml is not None and 4.0 < placed.abc2_volume_ml < 16.0
    assert placed.severity == "small" and placed.thickness_mm is None
    assert located.midline_shift_mm is not None and abs(located.midline_shift_mm) < 2.0


def test_a_series_without_patient_positions_keeps_its_lesions_unplaced(
    demo_series: SeriesGeometry,
) -> None:
    lesion, labels = _demo_lesion(demo_series)
    hu, cavity = anatomy_slices(demo_series)
    unplaced = replace(
        demo_series, slices=tuple(replace(s, origin=None) for s in demo_series.slices)
    )
    located = locate_lesions(unplaced, hu, cavity, labels, [lesion])
    assert not located.anatomy_read and located.midline_shift_mm is None
    assert located.lesions == [lesion]
    no_head = locate_lesions(demo_series, hu, np.zeros_like(cavity), labels, [lesion])
    assert not no_head.anatomy_read and no_head.lesions == [lesion]


def test_a_failing_anatomy_keeps_the_verdict(
    demo_series: SeriesGeometry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> anatomy_lesions.Located:
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(predict_module, "locate_lesions", broken)
    findings = predict_series(load_model(_bundled_model()), demo_series)
    assert findings.positive and findings.lesions and not findings.anatomy_read
    assert findings.lesions[0].place is None
    assert "not located" in caplog.text


def test_the_demo_study_reads_in_words(demo_series: SeriesGeometry) -> None:
    findings = predict_series(load_model(_bundled_model()), demo_series)
    assert findings.anatomy_read
    assert findings.impression().startswith("Small right frontal intraparenchymal")
    assert findings.impression().endswith("no midline shift.")
