"""Where a finding lies in the head, in a radiologist's terms, without torch.

From the slices the model read (HU on its input grid) and the lesion masks: the patient
coordinates of every grid pixel (``grid``), the brain's midsagittal plane and the
midline shift (``midline``), and each lesion's side, compartment, region, relation to
the inner table, ABC/2 volume, thickness and severity (``location``). The rules are
geometric and stated in docs/model-card.md; a region near a boundary is "approximate".
"""

from assistant.analysis.anatomy.grid import PatientGrid
from assistant.analysis.anatomy.location import Head, LesionReading, place_lesion, read_head

__all__ = ["Head", "LesionReading", "PatientGrid", "place_lesion", "read_head"]
