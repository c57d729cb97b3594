"""radassist: an AI node for radiology that sits beside a PACS."""

__version__ = "0.1.0"
