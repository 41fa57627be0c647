"""State-dict checkpoints: atomic save, safe load."""

import pickle

import pytest
import torch
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.weights import load_weights, save_weights


def net(seed):
    torch.manual_seed(seed)
    return SkipResNet(depth=8, num_classes=3, in_channels=1, widths=(4, 4, 8))


def test_round_trip(tmp_path):
    a, b = net(0), net(1)
    a.blocks[0].bn1.running_mean.fill_(0.25)  # buffers travel too
    path = save_weights(a, tmp_path / "skipnet.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skipnet.pt"]  # no temp files left
    load_weights(b, path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"old")
    save_weights(net(0), path)
    load_weights(net(1), path)


def test_load_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        load_weights(net(0), path)


def test_bad_paths_and_contents(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        save_weights(net(0), tmp_path / "missing" / "w.pt")
    with pytest.raises(ValueError, match="no weights"):
        load_weights(net(0), tmp_path / "nothing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="state dict"):
        load_weights(net(0), tmp_path / "list.pt")
    save_weights(net(0), tmp_path / "small.pt")
    with pytest.raises(RuntimeError):  # architecture mismatch is reported by torch
        load_weights(SkipResNet(depth=14, num_classes=3, in_channels=1), tmp_path / "small.pt")


def test_saved_weights_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = save_weights(torch.nn.Linear(2, 2), tmp_path / "w.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert not list(tmp_path.glob("*.tmp"))
