"""Yin-Yang generator and MNIST reader."""

import gzip

import numpy as np
import pytest
import torch

from pynn_brainscales2.errors import BrainScaleS2Error
from pynn_brainscales2.snn.datasets import MNIST, DatasetNotFoundError, YinYang, default_data_root


@pytest.mark.parametrize(
    "split, size, counts",
    [
        ("train", 5000, [1681, 1702, 1617]),
        ("validation", 1000, [316, 336, 348]),
        ("test", 1000, [350, 316, 334]),
    ],
)
def test_published_splits(split, size, counts):
    data = YinYang(split)
    assert len(data) == size
    assert data.class_counts().tolist() == counts


def test_samples_lie_in_the_disc_and_carry_mirrored_features():
    data = YinYang("validation")
    x, y = data.features[:, 0], data.features[:, 1]
    assert torch.all((x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25 + 1e-6)
    torch.testing.assert_close(data.features[:, 2], 1 - x)
    torch.testing.assert_close(data.features[:, 3], 1 - y)
    feature, label = data[3]
    assert feature.dtype == torch.float32 and label.dtype == torch.int64


def test_labels_follow_the_class_rule():
    data = YinYang("test")
    for (x, y, *_), label in zip(
        data.features.double().tolist()[:200], data.labels.tolist()[:200], strict=True
    ):
        assert data.which_class(x, y) == label
    assert data.which_class(0.75, 0.5) == 2 and data.which_class(0.25, 0.5) == 2  # the dots
    assert data.which_class(0.5, 0.9) == 1  # upper half, away from the right dot
    assert data.which_class(0.5, 0.1) == 0


def test_generator_is_seeded():
    a, b = YinYang("train", size=50, seed=7), YinYang("train", size=50, seed=7)
    assert torch.equal(a.features, b.features)
    assert not torch.equal(a.features, YinYang("train", size=50, seed=8).features)
    with pytest.raises(ValueError, match="train, validation, test"):
        YinYang("dev")


def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_files_from_a_directory(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 2051)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 2, 1]), 2049)
    data = MNIST(tmp_path, train=False)
    assert len(data) == 3
    x, y = data[1]
    assert x.shape == (28, 28) and y.item() == 2
    torch.testing.assert_close(x, torch.from_numpy(images[1] / 255.0).float())
    sub = tmp_path / "root"
    (sub / "mnist").mkdir(parents=True)
    for f in tmp_path.glob("*.gz"):
        (sub / "mnist" / f.name).write_bytes(f.read_bytes())
    assert len(MNIST(sub, train=False)) == 3  # a data root with an mnist/ folder works too


def test_mnist_missing_files_say_where_they_were_looked_for(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="PYNN_BRAINSCALES2_DATA") as err:
        MNIST(tmp_path)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, BrainScaleS2Error)
    monkeypatch.setenv("PYNN_BRAINSCALES2_DATA", str(tmp_path))
    assert default_data_root() == tmp_path


def test_mnist_repository_default_if_present(monkeypatch):
    monkeypatch.delenv("PYNN_BRAINSCALES2_DATA", raising=False)
    if not (default_data_root() / "mnist" / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("MNIST not present at the repository default ../shared/data/mnist")
    data = MNIST(train=False)
    assert len(data) == 10000
    assert torch.bincount(data.labels).tolist()[:2] == [980, 1135]
