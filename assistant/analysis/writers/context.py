"""What every writer needs besides the findings: who wrote the result, with what model."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import highdicom as hd
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.sr.codedict import codes

from assistant import __version__
from assistant.analysis.writers import result_series_number
from assistant.analysis.writers.uids import ResultIdentity
from assistant.findings import concepts

if TYPE_CHECKING:
    from assistant.analysis.imaging import SliceInfo

MANUFACTURER = "radassist"
NOT_FOR_CLINICAL_USE = "NOT FOR CLINICAL USE"


@dataclass(frozen=True)
class WriterContext:
    identity: ResultIdentity
    weights_sha256: str
    #: False unless the model card says the model is cleared for clinical use.
    clinical_use: bool = False
    intended_use: str = ""
    #: The series analysed: its number (None when it has none) and description.
    source_series_number: int | None = None
    source_series_description: str = ""
    #: The model's registry slot: sets its result series' numbers apart from other
    #: models' on the same series (result_series_number).
    model_slot: int = 0
    #: The study threshold of the model card (an algorithm parameter of the SR).
    threshold: float | None = None
    #: "state_dict" or "torchscript" (how the model was run).
    model_format: str = "state_dict"

    @property
    def model_name(self) -> str:
        return self.identity.model_name

    @property
    def model_version(self) -> str:
        return self.identity.model_version

    @property
    def software_versions(self) -> str:
        return f"radassist {__version__}"

    def series_number(self, kind: str) -> int:
        return result_series_number(kind, self.source_series_number, self.model_slot)

    def series_description(self, what: str) -> str:
        """What the object is, by which model, of which series, and the use warning, in
        64 characters: "AI report radassist-hyperdense S2 HEAD ROU NOT FOR CLINICAL USE".
        Several models may report on one series, so the model's name stays; the source's
        description is cut short first, then the model's name."""
        suffix = "" if self.clinical_use else f" {NOT_FOR_CLINICAL_USE}"
        number = "" if self.source_series_number is None else f"S{self.source_series_number}"
        head = f"AI {what}"
        model = self.model_name[: max(64 - len(head) - len(suffix) - len(number) - 2, 8)]
        fixed = " ".join(p for p in (head, model, number) if p)
        room = 64 - len(fixed) - len(suffix) - 1
        source = self.source_series_description.strip()[: max(room, 0)].rstrip()
        text = f"{fixed} {source}".rstrip() if source else fixed
        return (text + suffix)[:64]

    def use_statement(self) -> str:
        if self.clinical_use:
            return self.intended_use or f"Produced by {self.model_name} {self.model_version}."
        return (
            f"{NOT_FOR_CLINICAL_USE}. Produced automatically by {self.model_name} "
            f"{self.model_version}; research and demonstration only."
        )

    def algorithm_parameters(self) -> list[str]:
        """What, beside name and version, makes the exact model (TID 4019's Algorithm
        Parameters): the weights' hash, the study threshold and the format."""
        parameters = []
        if self.weights_sha256:
            parameters.append(f"weights sha256 {self.weights_sha256}")
        if self.threshold is not None:
            parameters.append(f"study threshold {self.threshold:g}")
        parameters.append(f"format {self.model_format}")
        return parameters

    def algorithm(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=self.model_name,
            version=self.model_version,
            parameters=self.algorithm_parameters(),
        )

    def segmentation_algorithm(self) -> hd.AlgorithmIdentificationSequence:
        return hd.AlgorithmIdentificationSequence(
            name=self.model_name,
            family=concepts.ALGORITHM_FAMILY,
            version=self.model_version,
            source=MANUFACTURER,
            parameters={"weights sha256": self.weights_sha256 or "unknown"}
            | ({"study threshold": f"{self.threshold:g}"} if self.threshold is not None else {}),
        )

    def device_observer(self) -> hd.sr.ObserverContext:
        return hd.sr.ObserverContext(
            observer_type=codes.cid270.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=self.identity.device_uid(),
                name=self.model_name,
                manufacturer_name=MANUFACTURER,
                model_name=self.model_version,
            ),
        )


#: Patient and study attributes our objects copy from the source: Type 2, so present
#: even when empty. Real scanners leave some out (the GE head has no birth date).
_COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def evidence_header(header: Dataset) -> Dataset:
    """A source header as the writers need it: a copy with absent Type 2 patient and
    study attributes present and empty."""
    copy = Dataset(header)
    # An empty FileMetaDataset: what pydicom turned the empty Dataset default into.
    copy.file_meta = getattr(header, "file_meta", FileMetaDataset())
    if "PixelData" in copy:  # evidence is the header; the pixels stay in the file
        del copy.PixelData
    for keyword in _COPIED_TYPE2:
        if keyword not in copy:
            setattr(copy, keyword, "")
    _charset_for_our_objects(copy)
    if (
        copy.get("PatientIdentityRemoved") == "YES"
        and not copy.get("DeidentificationMethod")
        and not copy.get("DeidentificationMethodCodeSequence")
    ):
        # Type 1C then; anonymisers often leave it empty (the GE head does).
        copy.DeidentificationMethod = "Not stated in the source images"
    return copy


def evidence_headers(slices: Iterable[SliceInfo]) -> dict[str, Dataset]:
    """The writers' `headers`: each source SOP Instance UID (in slice order) to its
    evidence header. A multi-frame object is one entry, however many of its frames are
    slices; the findings name the frames."""
    headers: dict[str, Dataset] = {}
    for info in slices:
        if info.sop_instance_uid not in headers:
            header = info.header
            if header is None:
                header = dcmread(info.path, stop_before_pixels=True)
            headers[info.sop_instance_uid] = evidence_header(header)
    return headers


#: Specific Character Set values highdicom takes (it copies the source's into our objects).
_HIGHDICOM_CHARSETS = frozenset(v.value for v in hd.enum.SpecificCharacterSetValues)


def _charset_for_our_objects(header: Dataset) -> None:
    """Make the source's Specific Character Set one highdicom writes (text is decoded to
    Unicode already, so any repertoire that holds it is right):

    - an empty first value means the default repertoire (PS3.3 C.12.1.1.2;
      `\\ISO 2022 IR 87` is the usual form at Japanese sites): it is named ISO 2022 IR 6;
    - a lone empty value means no extended repertoire: the attribute goes;
    - a value highdicom does not know (ISO 2022 IR 149, Korean, in 0.28.2): the object is
      written in UTF-8 (ISO_IR 192), which holds every character the source had."""
    if "SpecificCharacterSet" not in header:
        return
    header.decode()  # every text value to Unicode while the source's repertoire applies
    value = header.SpecificCharacterSet
    values = [str(v).strip() for v in ([value] if isinstance(value, str) else list(value))]
    if len(values) == 1 and not values[0]:
        del header.SpecificCharacterSet
        return
    if len(values) > 1 and not values[0]:
        values[0] = "ISO 2022 IR 6"
    if not set(values) <= _HIGHDICOM_CHARSETS:
        values = ["ISO_IR 192"]
    header.SpecificCharacterSet = values[0] if len(values) == 1 else values


@contextmanager
def quiet_person_names() -> Iterator[None]:
    """highdicom warns about one-component names ("REMOVED", "ANONYMOUS"); the name
    is the source's and is copied as it is, so the warning says nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*unlikely to represent the intended person name"
        )
        yield
