"""Findings → DICOM objects viewers show: a TID 1500 SR (``sr``), a KOS of key images
(``kos``) and a SEG of the masks (``seg``); UIDs in ``uids``, codes in ``concepts``.

Writers build datasets and do no I/O; the job pipeline stores and sends them. This
package imports nothing heavy on its own, so ``assistant.analysis.writers.uids`` is cheap for
the receiving side.
"""

#: Series numbers of our results when the source series has no number: high, so they
#: sort after the acquired series.
SERIES_NUMBERS = {"sr": 9901, "kos": 9902, "seg": 9903}
_KIND_DIGIT = {"sr": 1, "kos": 2, "seg": 3}
#: The Modality each kind of result is written with.
MODALITIES = {"sr": "SR", "kos": "KO", "seg": "SEG"}


def result_series_number(kind: str, source_series_number: int | None) -> int:
    """Our result series' number: 99, the source series' number, a digit for the kind
    (series 2 gives SR 9921, KOS 9922, SEG 9923; series 14 gives 99141…). Each analysed
    series of a study gets its own, sorting after the acquired ones."""
    if source_series_number is None:
        return SERIES_NUMBERS[kind]
    return int(f"99{abs(source_series_number)}{_KIND_DIGIT[kind]}")
