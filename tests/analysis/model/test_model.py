"""The CNN-RNN's shapes and the model folder: round trip, sha256 refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from assistant.analysis.model.card import ModelCard, ModelCardError, NetworkSpec
from assistant.analysis.model.folder import ModelIntegrityError, load_model, save_model
from assistant.analysis.model.network import CnnRnn


@pytest.fixture
def small() -> CnnRnn:
    torch.manual_seed(0)
    return CnnRnn(NetworkSpec(widths=(8, 16, 32), gru_hidden=16))


def test_shapes_for_a_batch_of_series(small: CnnRnn) -> None:
    out = small(torch.rand(2, 7, 3, 64, 64))
    assert out.study_logit.shape == (2,)
    assert out.slice_logits.shape == (2, 7)
    assert out.mask_logits is not None and out.mask_logits.shape == (2, 7, 16, 16)


def test_padding_does_not_change_a_shorter_series(small: CnnRnn) -> None:
    small.eval()
    series = torch.rand(1, 5, 3, 64, 64)
    padded = torch.cat([series, torch.zeros(1, 3, 3, 64, 64)], dim=1)
    with torch.inference_mode():
        alone = small(series)
        batched = small(
            torch.cat([padded, torch.rand(1, 8, 3, 64, 64)]), lengths=torch.tensor([5, 8])
        )
    assert torch.allclose(alone.study_logit, batched.study_logit[:1], atol=1e-5)
    assert torch.allclose(alone.slice_logits, batched.slice_logits[:1, :5], atol=1e-5)


def test_single_channel_and_stride_one_stem() -> None:
    net = CnnRnn(NetworkSpec(in_channels=1, widths=(16, 32, 64), stem_stride=1, mask_head=False))
    out = net(torch.rand(3, 28, 1, 28, 28))
    assert out.study_logit.shape == (3,) and out.mask_logits is None


def test_save_and_load_round_trip(small: CnnRnn, tmp_path: Path) -> None:
    card = save_model(tmp_path / "m", small, ModelCard(name="test", version="0.0.1", image_size=64))
    assert len(card.weights_sha256) == 64 and card.pytorch_version.startswith("2.")
    loaded = load_model(tmp_path / "m")
    assert loaded.card == card and not loaded.network.training
    small.eval()
    x = torch.rand(1, 4, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(small(x).study_logit, loaded.network(x).study_logit)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["clinical_use"] is False


def test_the_input_mask_travels_with_the_card(small: CnnRnn, tmp_path: Path) -> None:
    save_model(tmp_path / "m", small, ModelCard(name="t", version="0", input_mask="intracranial"))
    assert load_model(tmp_path / "m").card.input_mask == "intracranial"
    card = tmp_path / "m" / "model.json"
    card.write_text(card.read_text().replace('"intracranial"', '"whole-body"'))
    with pytest.raises(ModelCardError, match="input_mask"):
        load_model(tmp_path / "m")


def test_weights_that_do_not_match_the_card_are_refused(small: CnnRnn, tmp_path: Path) -> None:
    save_model(tmp_path / "m", small, ModelCard(name="test", version="0.0.1"))
    weights = tmp_path / "m" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_model(tmp_path / "m")


def test_fusing_batchnorm_keeps_the_outputs(small: CnnRnn) -> None:
    from assistant.analysis.model.network import fused_for_inference

    for module in small.modules():  # make the folding non-trivial
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
    small.eval()
    fused = fused_for_inference(small)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.encoder.modules())
    x = torch.rand(1, 6, 3, 64, 64)
    with torch.inference_mode():
        a, b = small(x), fused(x)
    assert torch.allclose(a.study_logit, b.study_logit, atol=1e-4)
    assert torch.allclose(a.slice_logits, b.slice_logits, atol=1e-4)
