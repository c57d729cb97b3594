"""The models a worker holds in memory, loaded from the registry when a job first names
one: a model added or promoted while the worker runs is read from the next job on.

Each is loaded from its registry folder, with the sha256 checked against both its card
and the registry's record (a registry file changed on disk is refused); the least
recently used beyond `capacity` is let go (and loaded again if a job names it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from assistant.analysis.model.folder import LoadedModel, ModelIntegrityError, load_model
from assistant.registry import ModelEntry, Registry, RegistryError


class ModelShelf:
    """LoadedModel by (name, version), loaded on first use; thread-safe."""

    def __init__(self, registry: Registry, capacity: int = 4) -> None:
        self.registry = registry
        self._capacity = capacity
        self._lock = threading.Lock()
        self._loaded: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()

    def entry(self, name: str, version: str) -> ModelEntry:
        """The registry's record of a model (RegistryError when it has none)."""
        entry = self.registry.find(name, version)
        if entry is None:
            raise RegistryError(f"model {name}:{version} is not in the registry")
        return entry

    def get(self, entry: ModelEntry) -> LoadedModel:
        """The loaded model of a registry entry (loading it the first time)."""
        key = (entry.name, entry.version)
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                self._loaded.move_to_end(key)
                return loaded
            loaded = load_model(entry.folder)
            if loaded.card.weights_sha256 != entry.weights_sha256:
                raise ModelIntegrityError(
                    f"{entry.ref}: the card in {entry.folder} names weights other than the "
                    "ones registered"
                )
            self._loaded[key] = loaded
            while len(self._loaded) > self._capacity:
                self._loaded.popitem(last=False)
            return loaded
