"""Intake: instances in from the PACS (C-STORE through dicom_node, STOW-RS, C-MOVE) →
atomic files and database rows → complete series → queued jobs.

Nothing here imports torch, the analysis stage or the training package: a complete
series is handed on as a job by name through the queue.
"""
