"""Every coded concept our results use, in one place (SNOMED CT, DCM, LOINC, UCUM, UMLS,
and our own private scheme where no standard code says it).

A site that maps the finding or its place differently changes it here and nowhere else:
the SR, KOS and SEG (assistant/analysis/writers), the HL7 message and the FHIR bundle
(assistant/delivery) all take their codes from this module.
Codes come from pydicom's dictionaries (`pydicom.sr.codedict.codes`, built from DICOM
PS3.16); the few written by hand say why, and where their concept id was checked.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

#: What the model looks for. Acute blood is the hyperdense lesion the phantoms teach.
FINDING = codes.SCT.IntracranialHemorrhage
FINDING_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
#: The finding site of a lesion that was not located (records before version 3).
FINDING_SITE = codes.SCT.Brain
PRESENT = codes.SCT.Present
ABSENT = codes.SCT.Absent

PROCEDURE = codes.SCT.ComputedTomographyOfHead
REPORT_TITLE = codes.DCM.ImagingMeasurementReport
IMAGING_MEASUREMENTS = codes.DCM.ImagingMeasurements
KEY_OBJECT_TITLE = codes.DCM.OfInterest
ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence

AREA = codes.SCT.Area
LONG_AXIS = codes.SCT.LongAxis
#: The mask's volume (its voxels summed).
VOLUME = codes.SCT.Volume
MEAN_ATTENUATION = codes.DCM.MeanAttenuationCoefficient
PROBABILITY = codes.DCM.Probability

#: The ABC/2 volume: A·B·C/2 is the ellipsoid's A·B·C·π/6 with π taken as 3 (CID 7472
#: "Volume of ellipsoid", measured by CID 7474's "LWH method for volume of ellipsoid":
#: the three diameters, length, width and height, are A, B and C).
ABC2_VOLUME = codes.DCM.VolumeOfEllipsoid
ABC2_METHOD = codes.DCM.LWHMethodForVolumeOfEllipsoid
#: An extra-axial collection's thickness. The dictionary has no SNOMED CT "Thickness";
#: LOINC's generic property (59089-3, in CID 12304) is the one it has.
THICKNESS = codes.LN.Thickness

#: Our private coding scheme (PS3.3 8.2: a designator starting "99"), declared in each
#: SR that uses it (Coding Scheme Identification Sequence) and in docs/conformance.md.
#: Used only where neither pydicom's dictionary nor DICOM PS3.16 has the concept.
PRIVATE_SCHEME = "99RADASSIST"
PRIVATE_SCHEME_NAME = "radassist private codes"
#: The septum pellucidum's displacement from the midsagittal plane (mm, always >= 0): no
#: SNOMED CT or DCM concept for a midline shift is in the dictionary.
MIDLINE_SHIFT = Code("MLS", PRIVATE_SCHEME, "Midline shift")
#: Which side the septum is pushed to: (SCT) Left or Right.
MIDLINE_SHIFT_DIRECTION = Code("MLSDIR", PRIVATE_SCHEME, "Direction of midline shift")
#: Said of a lesion whose region is a best guess (a rule near its limit, or too little
#: anatomy): the value is SNOMED CT's "Uncertain" qualifier (64957009).
SITE_CERTAINTY = Code("SITECERT", PRIVATE_SCHEME, "Certainty of finding site")
UNCERTAIN = Code(codes.SCT.Uncertain.value, "SCT", "Uncertain")

#: Where a lesion lies (assistant.findings.place.REGIONS) → the Finding Site's code.
REGIONS: dict[str, Code] = {
    "frontal": codes.SCT.FrontalLobe,
    "parietal": codes.SCT.ParietalLobe,
    "temporal": codes.SCT.TemporalLobe,
    "occipital": codes.SCT.OccipitalLobe,
    # No SNOMED CT structure spans the basal ganglia and the thalamus but "Gray matter"
    # (cortex included), and the dictionary has neither "Basal ganglia" nor a deep grey
    # matter structure. The analysis does not tell the two apart; most haemorrhages there
    # are putaminal, so the region is coded as the basal ganglion and the words (tracking
    # identifier, impression) say "basal ganglia/thalamic". By hand: 244434001 "Entire
    # basal ganglion (body structure)", checked on a SNOMED CT terminology server
    # (tx.fhir.org) and against UBERON:0002420's cross-reference.
    "basal ganglia/thalamus": Code("244434001", "SCT", "Basal ganglion"),
    "brainstem": codes.SCT.BrainStem,
    "cerebellum": codes.SCT.Cerebellum,
}

#: A lesion's side (assistant.findings.place.SIDES) → the Finding Site's Laterality
#: (CID 244). "midline" is SNOMED CT's "Midline" qualifier (261129000, CID 5: not
#: codes.SCT.Median, which is the statistical median); "" (no midsagittal plane
#: found) has no laterality.
LATERALITIES: dict[str, Code] = {
    "right": codes.SCT.Right,
    "left": codes.SCT.Left,
    "bilateral": codes.SCT.Bilateral,
    "midline": codes.SCT.Midline,
}

#: Within the parenchyma or against the inner table (assistant.findings.place.RELATIONS)
#: → the Finding Site's Topographical Modifier. Neither SNOMED CT nor DCM has an
#: "intra-axial"/"extra-axial" qualifier in the dictionary: an intra-axial lesion lies in
#: the "Parenchyma" (91772007, CID 5); an extra-axial collection in the spaces the
#: "Meninges" (1231004) bound (epidural, subdural, subarachnoid).
RELATIONS: dict[str, Code] = {
    "intra-axial": codes.SCT.Parenchyma,
    "extra-axial": codes.SCT.Meninges,
}

#: The severity band (assistant.findings.place.SEVERITIES) is set by size (the volume of
#: an intra-axial lesion, the thickness of an extra-axial collection, and the midline
#: shift: docs/model-card.md), so it is coded as a size, not as a clinical severity
#: (Mild/Moderate/Severe would claim a judgement of the patient's state the rule does not
#: make): (DCM) "Size Descriptor" = (SCT) Small, Medium or Large.
SEVERITY = codes.DCM.SizeDescriptor
SEVERITIES: dict[str, Code] = {
    "small": codes.SCT.Small,
    "medium": codes.SCT.Medium,
    "large": codes.SCT.Large,
}

#: TID 1500 row 12: free-text evaluations of the whole report (the use statement).
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = codes.DCM.Comment
#: The impression line, first of the report's evaluations after present/absent.
IMPRESSION = codes.DCM.Impression

SQUARE_MILLIMETRE = Code("mm2", "UCUM", "square millimeter")
MILLIMETRE = Code("mm", "UCUM", "millimeter")
MILLILITRE = Code("ml", "UCUM", "milliliter")
HOUNSFIELD_UNIT = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
#: Probabilities are reported in percent: a viewer prints a measurement as its value and
#: its unit's code, and OHIF showed UCUM's "1" literally ("Probability: 0.97 1").
PERCENT = Code("%", "UCUM", "percent")
