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
#: The largest Series Number (IS: a signed 32-bit integer).
_IS_MAX = 2**31 - 1
#: The Modality each kind of result is written with.
MODALITIES = {"sr": "SR", "kos": "KO", "seg": "SEG"}


def result_series_number(kind: str, source_series_number: int | None, model_slot: int = 0) -> int:
    """Our result series' number: 99, the source series' number, a digit for the kind
    (series 2 gives SR 9921, KOS 9922, SEG 9923; series 14 gives 99141…). Each analysed
    series of a study gets its own, sorting after the acquired ones.

    Another model's results on the same series (registry slot k ≥ 1, shared by all
    versions of a model name) start with 8 and k in two digits instead of 99: slot 1 on
    series 2 gives SR 80121; without a source number, 8kk00 and the kind digit. The
    prefixes never meet, and within one the kind digit ends the number, so no two
    (model, series, kind) share a number (slots go to 99: the registry holds at most 100
    names). A number beyond what Series Number holds falls back to the one without a
    source number."""
    digit = _KIND_DIGIT[kind]
    if model_slot <= 0:
        number = SERIES_NUMBERS[kind]
        if source_series_number is not None:
            number = int(f"99{abs(source_series_number)}{digit}")
    else:
        source = "00" if source_series_number is None else str(abs(source_series_number))
        number = int(f"8{model_slot % 100:02d}{source}{digit}")
    if number > _IS_MAX:  # a source number too long for an IS value: as if it had none
        return result_series_number(kind, None, model_slot)
    return number
