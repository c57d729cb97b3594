"""Deterministic UIDs for what we write: the same inputs always give the same UIDs.

A result is identified by the source series, the model (name and version) and the set
of instances it read (their digest). Re-running the same analysis therefore writes
objects with the same SOP Instance UIDs, which a PACS stores once; an instance that
arrives later changes the digest, and the new objects get new UIDs (and the new SR
names the old one as its predecessor).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import generate_uid


@dataclass(frozen=True)
class ResultIdentity:
    source_series_uid: str
    model_name: str
    model_version: str
    input_digest: str

    def uid(self, part: str) -> str:
        """The UID of one part of the result: "sr", "sr-series", "lesion-1"…"""
        return generate_uid(
            entropy_srcs=[
                self.source_series_uid,
                self.model_name,
                self.model_version,
                self.input_digest,
                part,
            ]
        )

    def device_uid(self) -> str:
        """The model as an observing device: the same for every study it reads."""
        return generate_uid(entropy_srcs=[self.model_name, self.model_version, "device"])
