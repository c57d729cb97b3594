"""TorchScript model folders: our model exported under the contract reads a study as the
state dict does, and loading refuses whatever is not what its card says (never unpickling
code)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import assistant.analysis.model as model_package
from assistant.analysis.imaging import SeriesGeometry, read_series
from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.analysis.inference import predict_series
from assistant.analysis.model.card import CARD_FILE, ModelCard, ModelCardError, read_card, sha256_of
from assistant.analysis.model.folder import LoadedModel, ModelIntegrityError, load_model
from assistant.analysis.model.torchscript import PROGRAM_FILE, export_torchscript
from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import make_case

# torch 2.13 warns on every torch.jit call; the tests script small programs of their own.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.* is deprecated:DeprecationWarning")

BUNDLED = Path(model_package.__file__).parent / "bundled"


@pytest.fixture(scope="module")
def bundled() -> LoadedModel:
    return load_model(BUNDLED)


@pytest.fixture(scope="module")
def exported(bundled: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exported") / "model"
    export_torchscript(bundled, folder)
    return folder


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> SeriesGeometry:
    """16 slices of a phantom head with one clear hyperdense lesion (the demo head's seed,
    at 256² to keep it quick): the bundled model calls it positive and outlines it."""
    case = make_case(19, positive=True, max_slices=16, matrix=256, lesion_sizes=(18.0, 35.0))
    folder = tmp_path_factory.mktemp("head")
    write_case(case, folder)
    return read_series(folder)


@pytest.fixture(scope="module")
def small_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("series")
    write_demo_series(folder, count=6)
    return folder


def _program_folder(folder: Path, program: nn.Module, card: ModelCard) -> Path:
    """A torchscript model folder holding `program`, scripted, under a copy of `card`."""
    folder.mkdir(parents=True)
    torch.jit.save(torch.jit.script(program), str(folder / PROGRAM_FILE))
    _write_card(folder, card, PROGRAM_FILE, "torchscript")
    return folder


def _write_card(folder: Path, card: ModelCard, weights_file: str, kind: str) -> None:
    card = card.with_updates(
        weights_file=weights_file,
        weights_sha256=sha256_of(folder / weights_file),
        format=kind,
    )
    (folder / CARD_FILE).write_text(card.to_json(), encoding="utf-8")


def test_an_export_reads_back_as_a_torchscript_model(bundled: LoadedModel, exported: Path) -> None:
    card = read_card(exported)
    source = bundled.card
    assert sorted(p.name for p in exported.iterdir()) == [CARD_FILE, PROGRAM_FILE]
    assert (card.format, card.weights_file) == ("torchscript", PROGRAM_FILE)
    assert card.weights_sha256 == sha256_of(exported / PROGRAM_FILE)
    assert card.version == f"{source.version}+torchscript" and card.parent == source.ref
    assert card.training == source.training and card.metrics == source.metrics
    assert (card.threshold, card.slice_threshold) == (source.threshold, source.slice_threshold)
    assert (card.windows, card.image_size, card.input_mask) == (
        source.windows,
        source.image_size,
        source.input_mask,
    )
    assert card.pytorch_version == torch.__version__.split("+")[0]
    loaded = load_model(exported)
    assert loaded.network is None and isinstance(loaded.program, torch.jit.ScriptModule)
    assert not loaded.program.training


def test_both_formats_read_a_study_alike(
    bundled: LoadedModel, exported: Path, head: SeriesGeometry
) -> None:
    ours = predict_series(bundled, head)
    program = predict_series(load_model(exported), head)
    assert ours.positive and ours.lesions  # so that what is compared below is not empty
    assert program.study_probability == pytest.approx(ours.study_probability, abs=1e-5)
    assert [s.probability for s in program.slices] == pytest.approx(
        [s.probability for s in ours.slices], abs=1e-5
    )
    assert program.positive == ours.positive
    assert program.flagged_instance_uids == ours.flagged_instance_uids
    assert len(program.lesions) == len(ours.lesions)
    assert [lesion.key_slice for lesion in program.lesions] == [
        lesion.key_slice for lesion in ours.lesions
    ]
    assert program.model.version == f"{bundled.card.version}+torchscript"


class _Resized(nn.Module):
    """A program from elsewhere: the exported one, its masks at another size (or none)."""

    def __init__(self, inner: torch.jit.ScriptModule, side: int) -> None:
        super().__init__()
        self.inner = inner
        self.side = side

    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        study, per_slice, masks = self.inner(slices)
        if self.side == 0:
            return study[0], per_slice, slices.new_zeros(0)
        resized = nn.functional.interpolate(
            masks[:, None], size=(self.side, self.side), mode="bilinear", align_corners=False
        )
        return study[0], per_slice, resized[:, 0]


@pytest.mark.parametrize("side", [0, 50, 128])
def test_a_program_may_give_masks_of_any_size_or_none(
    bundled: LoadedModel, exported: Path, head: SeriesGeometry, tmp_path: Path, side: int
) -> None:
    """50 does not divide the input's 128 (resized to 128 by the node), 128 is the
    input's size, 0 stands for no masks; the study probability is a 0-d tensor."""
    inner = load_model(exported).program
    assert inner is not None
    folder = _program_folder(tmp_path / "m", _Resized(inner, side), bundled.card)
    ours = predict_series(bundled, head)
    theirs = predict_series(load_model(folder), head)
    assert theirs.study_probability == pytest.approx(ours.study_probability, abs=1e-5)
    assert theirs.flagged_instance_uids == ours.flagged_instance_uids
    if side == 0:
        assert theirs.lesions == []
    else:
        assert [lesion.key_slice for lesion in theirs.lesions] == [
            lesion.key_slice for lesion in ours.lesions
        ]
        assert theirs.lesions[0].volume_ml == pytest.approx(ours.lesions[0].volume_ml, rel=0.3)


def test_export_names_its_version_and_never_overwrites(
    bundled: LoadedModel, exported: Path, tmp_path: Path
) -> None:
    card = export_torchscript(bundled, tmp_path / "v2", version="0.2.0")
    assert card == read_card(tmp_path / "v2") and card.version == "0.2.0"
    with pytest.raises(FileExistsError):
        export_torchscript(bundled, tmp_path / "v2")
    with pytest.raises(ModelCardError, match="version"):
        export_torchscript(bundled, tmp_path / "bad", version="../0.2")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ModelIntegrityError, match="TorchScript model"):
        export_torchscript(load_model(exported), tmp_path / "again")


def test_a_changed_byte_in_the_program_is_refused(exported: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(exported, tmp_path / "m"))
    program = folder / PROGRAM_FILE
    data = bytearray(program.read_bytes())
    data[len(data) // 2] ^= 0x01
    program.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model(folder)


@pytest.mark.parametrize(
    ("kind", "weights_file", "reason"),
    [
        ("state_dict", "weights.pt", "not a plain state dict .weights_only refused it: .*CnnRnn"),
        ("torchscript", PROGRAM_FILE, "a torch.save pickle, not a TorchScript archive"),
    ],
)
def test_a_pickled_module_is_refused_whatever_the_card_says(
    bundled: LoadedModel, tmp_path: Path, kind: str, weights_file: str, reason: str
) -> None:
    """torch.save of a whole nn.Module is a pickle that imports code when read: the card's
    hash matching it does not make it loadable."""
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(bundled.network, folder / weights_file)
    _write_card(folder, bundled.card, weights_file, kind)
    with pytest.raises(ModelIntegrityError, match=reason) as refused:
        load_model(folder)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("kind", "content", "reason"),
    [
        ("torchscript", "random", "not a TorchScript archive .not a zip archive."),
        ("torchscript", "state_dict", "a torch.save pickle, not a TorchScript archive"),
        ("state_dict", "program", "a TorchScript archive, but the card says format state_dict"),
        ("state_dict", "random", "not a plain state dict"),
    ],
)
def test_weights_that_are_not_what_the_card_says_are_refused(
    bundled: LoadedModel, exported: Path, tmp_path: Path, kind: str, content: str, reason: str
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    weights = folder / "weights.bin"
    if content == "random":
        weights.write_bytes(os.urandom(4096))
    elif content == "state_dict":
        assert bundled.network is not None
        torch.save(bundled.network.state_dict(), weights)
    else:
        shutil.copyfile(exported / PROGRAM_FILE, weights)
    _write_card(folder, bundled.card, weights.name, kind)
    with pytest.raises(ModelIntegrityError, match=reason) as refused:
        load_model(folder)
    assert "\n" not in str(refused.value)


class _SliceColumn(nn.Module):
    """Slice probabilities as a column [N, 1]."""

    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        per_slice = torch.full((slices.shape[0], 1), 0.5)
        return torch.full((1,), 0.5), per_slice, slices.new_zeros(0)


class _Logits(nn.Module):
    """Logits where the contract has probabilities."""

    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.full((1,), 3.0), torch.full((slices.shape[0],), -2.0), slices.new_zeros(0)


class _TwoOutputs(nn.Module):
    """No mask output at all, where the contract has an empty tensor."""

    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((1,), 0.5), torch.full((slices.shape[0],), 0.5)


class _MasksOfOneSlice(nn.Module):
    """Mask logits for one slice where the study has N."""

    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = slices.shape[0]
        return torch.full((1,), 0.5), torch.full((n,), 0.5), torch.zeros(1, 32, 32)


@pytest.mark.parametrize(
    ("program", "said"),
    [
        (_SliceColumn(), r"float32 tensor of shape \[6, 1\]"),
        (_Logits(), "outside \\[0, 1\\]"),
        (_TwoOutputs(), "a tuple of 2"),
        (_MasksOfOneSlice(), r"shape \[1, 32, 32\]\) for 6 slices"),
    ],
)
def test_a_program_that_breaks_the_contract_is_named(
    bundled: LoadedModel, small_series: Path, tmp_path: Path, program: nn.Module, said: str
) -> None:
    folder = _program_folder(tmp_path / "m", program, bundled.card)
    loaded = load_model(folder)
    with pytest.raises(ValueError, match=f"the TorchScript model returned .*{said}") as broken:
        predict_series(loaded, small_series)
    assert "the contract is (study probability [] or [1], slice probabilities [N]" in str(
        broken.value
    )


def test_the_loaded_model_says_which_it_holds(bundled: LoadedModel, exported: Path) -> None:
    assert bundled.require_network() is bundled.network
    with pytest.raises(ModelIntegrityError, match="TorchScript model"):
        load_model(exported).require_network()
