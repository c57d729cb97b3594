"""Every coded concept our results use, in one place (SNOMED CT, DCM, UCUM, UMLS).

A site that maps the finding differently changes it here and nowhere else.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

#: What the model looks for. Acute blood is the hyperdense lesion the phantoms teach.
FINDING = codes.SCT.IntracranialHemorrhage
FINDING_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
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
VOLUME = codes.SCT.Volume
MEAN_ATTENUATION = codes.DCM.MeanAttenuationCoefficient
PROBABILITY = codes.DCM.Probability

#: TID 1500 row 12: free-text evaluations of the whole report (the use statement).
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = codes.DCM.Comment

SQUARE_MILLIMETRE = Code("mm2", "UCUM", "square millimeter")
MILLIMETRE = Code("mm", "UCUM", "millimeter")
MILLILITRE = Code("ml", "UCUM", "milliliter")
HOUNSFIELD_UNIT = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
#: Probabilities are reported in percent: a viewer prints a measurement as its value and
#: its unit's code, and OHIF showed UCUM's "1" literally ("Probability: 0.97 1").
PERCENT = Code("%", "UCUM", "percent")
