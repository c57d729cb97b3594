"""The model registry and routes: which models the node holds, what state each is in,
and which series each reads. Torch-free and stage-free (like `db`): intake routes with
it, analysis loads what it names, the web shows and changes it."""

from assistant.registry.catalog import MODELS_FOLDER, ModelEntry, Registry, RegistryError, parse_ref
from assistant.registry.routes import Route, RouteFacts, Routes, routed_names

__all__ = [
    "MODELS_FOLDER",
    "ModelEntry",
    "Registry",
    "RegistryError",
    "Route",
    "RouteFacts",
    "Routes",
    "parse_ref",
    "routed_names",
]
