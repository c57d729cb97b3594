"""Analysis: a complete series → HU volume (``imaging``) → the CNN-RNN (``model``,
``inference``) → findings → DICOM objects (``writers``), run by the job ``pipeline``.

This package's ``__init__`` imports nothing: torch is loaded only by the modules that
need it (``model.network``, ``model.folder``, ``inference``), so the card, the
imaging code and the writers stay importable without it.
"""
