"""kNN evaluation: equal to a dense reference, chunking-invariant, bounded, careful with input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from timm_ccrop.evaluate import extract_features, knn_accuracy, knn_predict


def dense_reference(train, labels, test, num_classes, k, temperature):
    sims = F.normalize(test, dim=1) @ F.normalize(train, dim=1).T
    top, idx = sims.topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(test), num_classes)
    for row in range(len(test)):
        for sim, neighbour in zip(top[row], idx[row], strict=True):
            votes[row, labels[neighbour]] += torch.exp(sim / temperature)
    return votes


@pytest.fixture
def features():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(300, 16, generator=generator)
    labels = torch.randint(0, 5, (300,), generator=generator)
    test = torch.randn(70, 16, generator=generator)
    return train, labels, test


@pytest.mark.parametrize("k", [1, 20, 200, 1000])
def test_knn_matches_the_dense_reference(features, k: int) -> None:
    train, labels, test = features
    ours = knn_predict(train, labels, test, 5, k=k, temperature=0.1)
    reference = dense_reference(train, labels, test, 5, k, 0.1)
    assert torch.allclose(ours, reference, rtol=1e-4)
    assert torch.equal(ours.argmax(1), reference.argmax(1))


def test_chunking_gives_the_same_result(features) -> None:
    train, labels, test = features
    whole = knn_predict(train, labels, test, 5, k=50)
    chunked = knn_predict(train, labels, test, 5, k=50, chunk_size=7, train_chunk_size=33)
    assert torch.allclose(whole, chunked, rtol=1e-5)


def test_separable_clusters_score_100_and_errors_are_clear() -> None:
    centres = torch.eye(4) * 10
    train = centres.repeat_interleave(10, 0) + torch.randn(40, 4) * 0.1
    labels = torch.arange(4).repeat_interleave(10)
    accuracy = knn_accuracy(train, labels, centres, torch.arange(4), 4, k=5)
    assert accuracy == {"top1": 100.0}
    with pytest.raises(ValueError, match="unlabeled"):
        knn_predict(train, labels - 1, centres, 4)
    with pytest.raises(ValueError, match="feature sizes differ"):
        knn_predict(train, labels, torch.randn(2, 3), 4)


def test_extract_features_keeps_index_order() -> None:
    from PIL import Image
    from torchvision import transforms

    images = [(Image.new("RGB", (4, 4), (i * 20, 0, 0)), i) for i in range(9)]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    features, targets = extract_features(model, images, transforms.ToTensor(), batch_size=4,
                                         progress=False)
    assert torch.equal(targets, torch.arange(9))
    direct = model(torch.stack([transforms.ToTensor()(img) for img, _ in images]))
    assert torch.allclose(features, direct.detach(), atol=1e-6)
