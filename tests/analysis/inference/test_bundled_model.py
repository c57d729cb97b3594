"""The bundled model carries over to a real head: a lesion inserted into the GE head CT
is found, and the clean scan stays negative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.analysis.imaging import read_series
from assistant.analysis.inference import predict_series
from assistant.analysis.model.folder import load_model
from assistant.cli import _bundled_model, main
from assistant.findings.wording import percent
from assistant.training.demo import write_demo_head
from tests.support.ct import insert_lesion, shared_ct

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled():
    folder = _bundled_model()
    if not (folder / "model.json").is_file():
        pytest.fail("the bundled model is missing: make bundled-model trains it")
    return load_model(folder)


def test_clean_real_head_stays_negative(bundled) -> None:
    prediction = predict_series(bundled, shared_ct("ge_head_tilted"))
    assert not prediction.positive, prediction.study_probability
    # No slice flagged either, the vertex included (the model before this one: 0.82 there).
    assert not prediction.flagged_instance_uids, [s.probability for s in prediction.slices]


def test_lesion_inserted_into_a_real_head_is_found(bundled, tmp_path: Path) -> None:
    touched = insert_lesion(shared_ct("ge_head_tilted"), tmp_path / "with_lesion")
    prediction = predict_series(bundled, tmp_path / "with_lesion")
    assert prediction.positive, prediction.study_probability
    assert set(prediction.flagged_instance_uids) & set(touched)
    assert prediction.lesions and prediction.lesions[0].key_sop_instance_uid in touched
    key = prediction.lesions[0]
    assert 40 < key.mean_hu < 90  # blood, not bone the coarse mask brushed


def test_the_lesion_raises_its_slices_and_nothing_else(bundled, tmp_path: Path) -> None:
    """What the inserted blood changes is its own slices' probabilities."""
    touched = insert_lesion(shared_ct("ge_head_tilted"), tmp_path / "with_lesion")
    clean = predict_series(bundled, shared_ct("ge_head_tilted"))
    blood = predict_series(bundled, tmp_path / "with_lesion")
    rise = {
        a.sop_instance_uid: b.probability - a.probability
        for a, b in zip(clean.slices, blood.slices, strict=True)
    }
    assert max(rise[uid] for uid in touched) > 0.5
    assert max(r for uid, r in rise.items() if uid not in touched) < 0.2


def test_predict_json(bundled, capsys) -> None:
    import json

    assert main(["predict", str(shared_ct("ge_head_tilted")), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {
        "study_probability",
        "positive",
        "slices",
        "flagged_instance_uids",
        "lesions",
    }
    assert len(out["slices"]) == 28 and {"sop_instance_uid", "probability"} <= set(out["slices"][0])

    # Without --json, a line for people, in percent as the SR and the dashboard give it.
    assert main(["predict", str(shared_ct("ge_head_tilted"))]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        f"{'POSITIVE' if out['positive'] else 'negative'}: study probability "
        f"{percent(out['study_probability'])} (threshold {percent(out['threshold'])})"
    )


def test_predict_prints_each_lesion(bundled, tmp_path: Path, capsys) -> None:
    import json

    write_demo_head(tmp_path / "head")
    assert main(["predict", str(tmp_path / "head"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert main(["predict", str(tmp_path / "head")]) == 0
    first, impression, *rest = capsys.readouterr().out.splitlines()
    assert first.startswith("POSITIVE: study probability ") and out["lesions"]
    assert impression == f"Impression: {out['impression']}"
    lines = [line for line in rest if line.startswith("  ")]
    assert len(lines) == len(out["lesions"])
    for number, (line, lesion) in enumerate(zip(lines, out["lesions"], strict=True), start=1):
        first_slice, last_slice = lesion["first_slice"] + 1, lesion["last_slice"] + 1
        where = (
            f"slice {first_slice},"
            if first_slice == last_slice
            else f"slices {first_slice}\u2013{last_slice},"
        )
        assert line.startswith(f"  {number}. ") and where in line
        assert line.endswith(f", probability {percent(lesion['probability'])}")


def test_a_lesion_outside_the_cavity_still_gets_a_density(tmp_path: Path) -> None:
    """Mean HU falls back to the lesion's own pixels when none of them is inside the
    cavity read again on the key slice: a number the SR can carry, never NaN."""
    from assistant.analysis.inference.predict import _lesions
    from assistant.training.demo import write_demo_head

    write_demo_head(tmp_path / "head")
    series = read_series(tmp_path / "head")
    masks = np.zeros((len(series.slices), 32, 32), dtype=bool)
    masks[5, 0:2, 0:2] = True  # the image's corner: air, far outside the skull
    lesions, labels = _lesions(
        series, masks, np.full(len(series.slices), 0.9), 128, input_mask="intracranial"
    )
    assert len(lesions) == 1 and labels[5, 0, 0] == 1
    assert lesions[0].mean_hu < -900  # the air it covers


def test_the_demo_head_shows_its_lesion(bundled, tmp_path: Path) -> None:
    """`make demo` and the viewer tests send this phantom: the model must find its blood
    (a change to the phantoms once turned the demo case into a faint 50 HU epidural)."""
    prediction = predict_series(bundled, write_demo_head(tmp_path / "demo")[0].parent)
    assert prediction.positive, prediction.study_probability
    key = prediction.lesions[0]
    assert key.longest_diameter_mm > 15 and 60 < key.mean_hu < 100


def test_a_series_with_a_localizer_is_read_without_it_and_says_so(bundled, tmp_path: Path) -> None:
    import shutil

    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from tests.support.ct import dicom_files

    folder = tmp_path / "series"
    folder.mkdir()
    files = dicom_files(shared_ct("ge_head_tilted"))
    for path in files:
        shutil.copy(path, folder / path.name)
    scout = dcmread(files[0])
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    scout.save_as(folder / "scout.dcm")
    findings = predict_series(bundled, folder)
    clean = predict_series(bundled, shared_ct("ge_head_tilted"))
    assert len(findings.slices) == 28
    assert findings.notes == ["Read 28 of 29 images; left out localizer (scout): 1"]
    assert findings.study_probability == pytest.approx(clean.study_probability, abs=1e-6)
    assert findings.summary().splitlines()[1] == findings.notes[0]
