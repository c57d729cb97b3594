"""TorchScript models: programs made elsewhere that the node runs under one contract.

A model folder whose card says ``"format": "torchscript"`` holds a TorchScript archive
(``torch.jit.save``) instead of our network's state dict. The node prepares the slices
exactly as for its own network (the card's input_mask, windows and image_size, by
``SeriesGeometry.model_slice``) and calls the program once on the whole study.

Input: one float32 tensor ``[N, C, S, S]``, contiguous: a study as its ordered stack of
N slices (feet → head, the order the node reads them in); C = ``len(card.windows)``
channels, each slice windowed to [0, 1] by each of the card's windows after the card's
``input_mask`` has blanked what it leaves out; S = ``card.image_size``.

Output: a tuple of three float tensors ``(study_probability, slice_probabilities,
mask_logits)``:

- ``study_probability``: shape ``[]`` or ``[1]``, after the sigmoid (in [0, 1]);
- ``slice_probabilities``: shape ``[N]``, after the sigmoid, in the input's slice order;
- ``mask_logits``: shape ``[N, H, W]``, before the sigmoid (a logit ≥ 0 puts the pixel in
  a lesion), or an empty tensor (numel 0) when the model gives no masks. A square H = W
  that divides S is used as it is, each mask pixel covering (S/H)² input pixels as our
  own mask head's S/4 output does; any other H x W is resized bilinearly to S x S first.

Anything else is refused when the model runs, with the contract in the message
(``assistant.analysis.inference.predict``). The card still says how to read the
probabilities: ``threshold`` (study) and ``slice_threshold`` (slices).

Loading refuses anything that is not a TorchScript archive: a ``torch.save`` pickle of a
module (which would import and run Python code when read), a state dict, or any other
bytes. A TorchScript archive holds TorchScript code and tensors, which ``torch.jit.load``
reads without importing Python modules.

``export_torchscript`` makes such a folder from one of our own models. It scripts
(``torch.jit.script``) rather than traces: our CNN-RNN has no data-dependent Python in the
path the contract uses, so scripting keeps every slice count exact, where a trace would
record the one N it ran with in the GRU's masks. Scripting needs every method of the
module it compiles to be TorchScript, and ``CnnRnn.forward`` returns a dataclass, which
is not; so the program is a subclass of ``CnnRnn`` whose ``forward`` is the contract,
calling the network's own ``encode`` and ``read``. The exported program's outputs are
checked against the eager network's on a probe stack before the folder is written.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

from assistant.analysis.model.card import CARD_FILE, ModelCard, sha256_of
from assistant.analysis.model.folder import LoadedModel, ModelIntegrityError
from assistant.analysis.model.network import CnnRnn, fused_for_inference

#: The weights file of an exported folder.
PROGRAM_FILE = "model.ts"
#: Slices in the probe stack an export is checked on (any count other than a batch's).
_PROBE_SLICES = 5


class ContractProgram(CnnRnn):
    """Our CNN-RNN with the contract's forward: [N, C, S, S] → (study probability,
    slice probabilities [N], mask logits [N, h, w] or an empty tensor)."""

    # The contract's forward replaces the training one (hence the override). TorchScript
    # reads "# type:" comments as signatures: the ignore must end the def line.
    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        features, masks = self.encode(slices.contiguous(memory_format=torch.channels_last))
        study_logit, slice_logits = self.read(features[None])
        if masks is None:
            masks = slices.new_zeros(0)
        return torch.sigmoid(study_logit), torch.sigmoid(slice_logits[0]), masks


def export_torchscript(loaded: LoadedModel, out: Path, *, version: str | None = None) -> ModelCard:
    """Write our model as a TorchScript folder in `out` (model.ts, then model.json, each
    atomically) and return its card: version `version` (default "<version>+torchscript"),
    parent the source model's "name:version", training and metrics copied."""
    network = loaded.require_network()  # a TorchScript model is refused: not ours to read
    out = Path(out)
    if (out / CARD_FILE).exists():
        raise FileExistsError(f"{out} already holds a model ({CARD_FILE}); export to a new folder")
    source = loaded.card
    card = source.with_updates(
        version=version or f"{source.version}+torchscript",
        format="torchscript",
        weights_file=PROGRAM_FILE,
        weights_sha256="0" * 64,  # filled in once the program is written
        parent=source.ref,
        pytorch_version=torch.__version__.split("+")[0],
    )
    ModelCard.from_json(card.to_json())  # a bad version is refused before anything is written
    program = _scripted(network)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROGRAM_FILE
    temp = out / f".{PROGRAM_FILE}.tmp"
    try:
        with temp.open("wb") as handle, _quiet_jit():
            torch.jit.save(program, handle)
            handle.flush()
            os.fsync(handle.fileno())
        # Read back as the node will read it, and compared before it takes the name.
        _check_against_eager(load_torchscript(temp, "cpu"), network, source)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, path)
    card = card.with_updates(weights_sha256=sha256_of(path))
    card_temp = out / f".{CARD_FILE}.tmp"
    with card_temp.open("w", encoding="utf-8") as handle:
        handle.write(card.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(card_temp, out / CARD_FILE)
    return card


def load_torchscript(path: Path, device: str | torch.device) -> torch.jit.ScriptModule:
    """Read a TorchScript archive onto `device`, in eval mode; ModelIntegrityError (one
    line) for anything else: a pickled module or state dict is never unpickled here."""
    path = Path(path)
    records = _archive_records(path)
    if records is None:
        raise ModelIntegrityError(f"{path.name} is not a TorchScript archive (not a zip archive)")
    if "constants.pkl" not in records or not any(r.startswith("code/") for r in records):
        what = "a torch.save pickle" if "data.pkl" in records else "a zip archive"
        raise ModelIntegrityError(
            f"{path.name} is {what}, not a TorchScript archive (no code/ and constants.pkl); "
            "the node does not unpickle Python objects"
        )
    try:
        with _quiet_jit():
            program = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelIntegrityError(
            f"{path.name} is not a readable TorchScript archive: {reason}"
        ) from exc
    if not isinstance(program, torch.jit.ScriptModule):
        raise ModelIntegrityError(f"{path.name} holds no TorchScript module")
    return program.eval()


def _archive_records(path: Path) -> set[str] | None:
    """The names in a torch zip archive, less the one top folder every record sits in
    (None when the file is not a zip archive)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    return {name.split("/", 1)[1] for name in names if "/" in name}


def _scripted(network: CnnRnn) -> torch.jit.ScriptModule:
    """The network as a ContractProgram, BatchNorm folded as for inference, scripted."""
    program = ContractProgram(network.spec)
    program.load_state_dict(network.state_dict(), strict=True)
    # fused_for_inference deep-copies, so the copy is a ContractProgram too.
    fused = fused_for_inference(program)
    fused.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with _quiet_jit():
        scripted = torch.jit.script(fused)
    return scripted


@torch.inference_mode()
def _check_against_eager(program: torch.jit.ScriptModule, network: CnnRnn, card: ModelCard) -> None:
    """Refuse an export whose program, read back, differs from the eager network."""
    probe = torch.Generator().manual_seed(0)
    x = torch.rand(
        _PROBE_SLICES, network.spec.in_channels, card.image_size, card.image_size, generator=probe
    )
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        features, masks = network.encode(x.to(device))
        study_logit, slice_logits = network.read(features[None])
    finally:
        network.train(was_training)
    expected = [torch.sigmoid(study_logit), torch.sigmoid(slice_logits[0])]
    expected.append(masks if masks is not None else x.new_zeros(0))
    for got, want in zip(program(x), expected, strict=True):
        if got.shape != want.shape or not torch.allclose(got, want.cpu(), atol=1e-4):
            raise RuntimeError(
                "the exported program does not give the network's outputs on a probe stack"
            )


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch 2.13 warns that torch.jit is deprecated on every script, save and load;
    TorchScript is the format sites send, so that one warning is silenced, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit.* is deprecated", category=DeprecationWarning
        )
        yield
