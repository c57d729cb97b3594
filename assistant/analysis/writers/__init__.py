"""Findings → DICOM objects viewers show: a TID 1500 SR (``sr``), a KOS of key images
(``kos``) and a SEG of the masks (``seg``); UIDs in ``uids``, codes in ``concepts``.

Writers build datasets and do no I/O; the job pipeline stores and sends them. This
package imports nothing heavy on its own, so ``assistant.analysis.writers.uids`` is cheap for
the receiving side.
"""

#: Series numbers of our results: high, so they sort after the acquired series.
SERIES_NUMBERS = {"sr": 9901, "kos": 9902, "seg": 9903}
#: The Modality each kind of result is written with.
MODALITIES = {"sr": "SR", "kos": "KO", "seg": "SEG"}
