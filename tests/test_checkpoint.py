"""The checkpoint is data with a checksum, checked against the architecture."""

from __future__ import annotations

import pickle

import pytest
import torch

from algorithm.network.checkpoint import CheckpointError, InferenceSettings, load_checkpoint, save_checkpoint
from algorithm.network import CTSUNet, NetworkConfig


def test_round_trip_keeps_settings_and_weights(tmp_path):
    model = CTSUNet()
    settings = InferenceSettings(inplane_size=96, train_patch_in=116, tile_out=36)
    digest = save_checkpoint(model, settings, tmp_path / "w.pt", trained_on="unit test", half_precision=False)
    loaded = load_checkpoint(tmp_path / "w.pt")
    assert loaded.sha256 == digest and loaded.settings == settings
    assert loaded.meta["trained_on"] == "unit test"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)
    assert not loaded.model.training


def test_half_precision_storage_is_close(tmp_path):
    model = CTSUNet()
    save_checkpoint(model, InferenceSettings(), tmp_path / "w.pt", trained_on="x")
    w = load_checkpoint(tmp_path / "w.pt").model.stage1.down[0][0][0].weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, model.stage1.down[0][0][0].weight, atol=1e-3)


def test_modified_weights_fail_the_checksum(tmp_path):
    save_checkpoint(CTSUNet(), InferenceSettings(), tmp_path / "w.pt", trained_on="x")
    payload = torch.load(tmp_path / "w.pt", weights_only=True)
    payload["state_dict"]["stage1.lobe_head.bias"][0] += 1
    torch.save(payload, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "w.pt")


def test_truncated_file_is_refused(tmp_path):
    save_checkpoint(CTSUNet(), InferenceSettings(), tmp_path / "w.pt", trained_on="x")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "w.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "w.pt")


class _Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_is_never_run(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"format": "ctsunet-checkpoint", "x": _Exploit()}, handle)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert "code ran" not in capsys.readouterr().out


def test_mismatching_architecture_is_refused(tmp_path):
    save_checkpoint(CTSUNet(NetworkConfig("none")), InferenceSettings(), tmp_path / "w.pt", trained_on="x")
    payload = torch.load(tmp_path / "w.pt", weights_only=True)
    payload["meta"]["settings"]["network"] = {"nonlocal_mode": "geometric"}  # lie about it
    from algorithm.network.checkpoint import state_digest

    payload["sha256"] = state_digest(payload["meta"], payload["state_dict"])
    torch.save(payload, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(tmp_path / "w.pt")
