"""Pseudonymise DICOM instances for a dataset that leaves the site: DICOM PS3.15 Annex E,
the Basic Application Level Confidentiality Profile, with the Retain Longitudinal
Temporal Information with Modified Dates Option (dates shifted, intervals kept).

What happens to each attribute, anywhere in the dataset (inside sequences too):

- Patient's Name and Patient ID: one pseudonym per patient of the export ("ANON-0001");
- every attribute in ``REMOVED`` (other IDs, addresses, physicians and operators,
  institution, device serial, descriptions and comments…), every private attribute,
  every attribute of unknown meaning (VR UN) and overlay data and comments: removed;
- every attribute in ``EMPTIED`` (birth date, sex, accession number, study ID,
  referring physician…) and every other person name: kept, with no value (they are
  type 2 in the CT Image IOD: present, may be empty);
- every date (DA) and the date of every date-time (DT): moved by the patient's shift, a
  random whole number of days, the same for all of that patient's dates;
- every UID (UI) except the standard's own (under 1.2.840.10008: SOP classes, transfer
  syntaxes, well-known frames of reference): replaced by ``generate_uid`` from a secret
  of this export and the original, so a UID referenced from another instance maps to the
  same new one, and nobody without the secret can go back.

Times (TM) are kept (the option keeps them). Pixel data are not cleaned: a series with
Burned In Annotation YES must not be pseudonymised (``burned_in`` says so).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

#: The standard's own UIDs (SOP classes, transfer syntaxes, coding schemes, well-known
#: frames of reference) identify no one and must stay as they are.
DICOM_UID_ROOT = "1.2.840.10008."
PSEUDONYM_FORMAT = "ANON-{:04d}"
#: Shifts are drawn from 1 to this many days back (never 0: every date moves).
MAX_SHIFT_DAYS = 3650

#: (code value, meaning) in DCM of what is done: the profile and its option.
PROFILE_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
#: De-identification Method (0012,0063), one value each (LO: 64 characters at most).
METHOD_TEXT = (
    "DICOM PS3.15 E.1 Basic Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "radassist dataset export",
)

#: Removed wherever found (PS3.15 Table E.1-1, action X, or X/Z, X/D where empty or
#: absent is allowed for a CT image).
REMOVED = frozenset(
    {
        # patient
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "IssuerOfPatientID",
        "PatientBirthName",
        "PatientMotherBirthName",
        "PatientBirthTime",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "PatientInstitutionResidence",
        "PatientPrimaryLanguageCodeSequence",
        "PatientReligiousPreference",
        "PatientInsurancePlanCodeSequence",
        "PatientSexNeutered",
        "PatientState",
        "PatientComments",
        "MilitaryRank",
        "BranchOfService",
        "MedicalRecordLocator",
        "EthnicGroup",
        "Occupation",
        "AdditionalPatientHistory",
        "CountryOfResidence",
        "RegionOfResidence",
        "CurrentPatientLocation",
        "PregnancyStatus",
        "SmokingStatus",
        "MedicalAlerts",
        "Allergies",
        "ReferencedPatientSequence",
        # visit, order, procedure
        "AdmissionID",
        "IssuerOfAdmissionID",
        "AdmittingDiagnosesDescription",
        "AdmittingDiagnosesCodeSequence",
        "ServiceEpisodeID",
        "ServiceEpisodeDescription",
        "IssuerOfAccessionNumberSequence",
        "RequestAttributesSequence",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "RequestingService",
        "ReasonForStudy",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
        "ReferencedPerformedProcedureStepSequence",
        "ReferencedStudySequence",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "OrderEntererLocation",
        "OrderCallbackPhoneNumber",
        "PerformedLocation",
        "PerformedStationName",
        "ScheduledStationName",
        # people
        "PerformingPhysicianName",
        "PerformingPhysicianIdentificationSequence",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansReadingStudyIdentificationSequence",
        "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence",
        "ConsultingPhysicianName",
        "ConsultingPhysicianIdentificationSequence",
        "OperatorsName",
        "OperatorIdentificationSequence",
        "RequestingPhysician",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "ReferringPhysicianIdentificationSequence",
        "ScheduledPerformingPhysicianName",
        "OrderEnteredBy",
        "PersonAddress",
        "PersonTelephoneNumbers",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        "VerifyingOrganization",
        "DistributionName",
        "DistributionAddress",
        "InterpretationRecorder",
        "InterpretationTranscriber",
        "InterpretationAuthor",
        "PhysicianApprovingInterpretation",
        "ReviewerName",
        "ClinicalTrialSponsorName",
        # institution and device
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence",
        "StationName",
        "DeviceSerialNumber",
        "DeviceUID",
        "DeviceDescription",
        "DetectorID",
        "GantryID",
        "SoftwareVersions",
        "NetworkID",
        # free text that may name anyone
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "StudyComments",
        "ImageComments",
        "FrameComments",
        "AcquisitionComments",
        "DerivationDescription",
        "ContributionDescription",
        "IdentifyingComments",
        "TextComments",
        "TextString",
        # what a previous de-identification kept of the originals
        "ModifiedAttributesSequence",
        "OriginalAttributesSequence",
    }
)
#: Kept with no value (action Z: type 2 attributes of the CT image).
EMPTIED = frozenset(
    {
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "ContentCreatorName",
    }
)
#: File meta attributes that name the sender or carry private data.
META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)


@dataclass(frozen=True)
class PatientPseudonym:
    """What one patient becomes in an export."""

    pseudonym: str
    shift_days: int


@dataclass
class Pseudonymiser:
    """The secret and the patients' pseudonyms and date shifts of one export: the same
    patient gets the same pseudonym and shift, the same UID the same new UID."""

    secret: str
    patients: dict[str, PatientPseudonym] = field(default_factory=dict)

    @classmethod
    def new(cls) -> Pseudonymiser:
        """A pseudonymiser with a fresh random secret (never stored)."""
        return cls(secrets.token_hex(32))

    def patient(self, key: str) -> PatientPseudonym:
        """The pseudonym and date shift of the patient `key` (a database key, never
        written out), made on first use."""
        if key not in self.patients:
            number = len(self.patients) + 1
            shift = -(1 + secrets.randbelow(MAX_SHIFT_DAYS))
            self.patients[key] = PatientPseudonym(PSEUDONYM_FORMAT.format(number), shift)
        return self.patients[key]

    def uid(self, original: str) -> str:
        """The new UID of `original`; the standard's own UIDs and empty values stay."""
        original = original.strip()
        if not original or original.startswith(DICOM_UID_ROOT):
            return original
        return str(generate_uid(entropy_srcs=[self.secret, original]))

    def apply(self, dataset: Dataset, patient_key: str) -> None:
        """Pseudonymise `dataset` (and its file meta) in place for patient `patient_key`."""
        patient = self.patient(patient_key)
        _clean(dataset, self, patient)
        dataset.PatientName = patient.pseudonym
        dataset.PatientID = patient.pseudonym
        dataset.PatientIdentityRemoved = "YES"
        dataset.LongitudinalTemporalInformationModified = "MODIFIED"
        dataset.DeidentificationMethod = list(METHOD_TEXT)
        dataset.DeidentificationMethodCodeSequence = Sequence(
            [_code(value, meaning) for value, meaning in PROFILE_CODES]
        )
        meta = getattr(dataset, "file_meta", None)
        if meta is not None:
            for tag in META_REMOVED:
                if tag in meta:
                    del meta[tag]
            if "SOPInstanceUID" in dataset:
                meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID


def profile() -> dict[str, Any]:
    """What the manifest says about the pseudonymisation."""
    return {
        "standard": "DICOM PS3.15 Annex E",
        "codes": [
            {"value": value, "scheme": "DCM", "meaning": meaning}
            for value, meaning in PROFILE_CODES
        ],
        "patient": f"Patient's Name and Patient ID replaced by {PSEUDONYM_FORMAT.format(1)}, ...",
        "dates": f"shifted per patient by 1 to {MAX_SHIFT_DAYS} days back; times kept",
        "uids": f"every UID not under {DICOM_UID_ROOT.rstrip('.')} replaced (secret not kept)",
        "removed": [*sorted(REMOVED), "private attributes", "VR UN", "overlay data"],
        "emptied": [*sorted(EMPTIED), "every other person name"],
        "pixels": "not cleaned: series with burned-in annotation are left out",
    }


def burned_in(dataset: Dataset) -> bool:
    """Whether the pixels carry text (Burned In Annotation YES), which this profile
    does not clean."""
    return str(dataset.get("BurnedInAnnotation", "")).upper() == "YES"


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _clean(dataset: Dataset, pseudonymiser: Pseudonymiser, patient: PatientPseudonym) -> None:
    """Remove, empty, shift and remap `dataset`'s attributes and its items', in place."""
    for tag in list(dataset.keys()):
        element = dataset[tag]
        overlay_text = 0x6000 <= tag.group <= 0x60FF and tag.element in (0x3000, 0x4000)
        if tag.is_private or element.VR == "UN" or overlay_text or element.keyword in REMOVED:
            del dataset[tag]
        elif element.VR == "SQ":
            for item in element.value:
                _clean(item, pseudonymiser, patient)
        elif element.keyword in ("PatientName", "PatientID"):
            element.value = patient.pseudonym
        elif element.VR == "PN" or element.keyword in EMPTIED:
            element.value = ""
        elif element.VR == "UI":
            element.value = _each(element.value, pseudonymiser.uid)
        elif element.VR in ("DA", "DT"):
            element.value = _each(element.value, lambda text: _shift(text, patient.shift_days))


def _each(value: Any, change: Callable[[str], str]) -> Any:
    """`change` applied to a value or to each of a multi-value."""
    if value is None or value == "":
        return value
    if isinstance(value, str):
        return change(value)
    return [change(str(item)) for item in value]


def _shift(text: str, days: int) -> str:
    """A DA or DT value moved by `days`; emptied where its date cannot be read (a date
    that cannot be shifted must not stay as it was)."""
    text = str(text).strip()
    if not text:
        return ""
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
    except ValueError:
        return ""
    return moved.strftime("%Y%m%d") + text[8:]
