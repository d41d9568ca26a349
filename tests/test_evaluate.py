"""kNN evaluation: equal to a dense reference, chunking-invariant, bounded, careful with input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from timm_ccrop.evaluation import extract_features, knn_accuracy, knn_predict


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
    ours = knn_predict(train, labels, test, 5, k=k, knn_temperature=0.1)
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


# --------------------------------------------------------------------------------------
# kNN edge cases, linear probes, recipes, validation split, backbone sources
# --------------------------------------------------------------------------------------


def test_k_larger_than_the_train_set_uses_every_sample(features) -> None:
    train, labels, test = features
    small = train[:12], labels[:12]
    huge = knn_predict(*small, test, 5, k=10**6, chunk_size=16, train_chunk_size=5)
    exact = knn_predict(*small, test, 5, k=12)
    assert torch.allclose(huge, exact)
    assert torch.allclose(huge, dense_reference(*small, test, 5, 12, 0.1), rtol=1e-4)
    truth = torch.zeros(len(test), dtype=torch.long)
    assert set(knn_accuracy(*small, test, truth, 5, k=500)) == {"top1", "top5"}


def separable_problem(seed: int = 0, per_class: int = 40, num_classes: int = 6, dim: int = 16):
    """Gaussian clusters around orthogonal centres: linearly separable by a wide margin."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:num_classes] * 4
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    features = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_linear_probe_learns_a_separable_problem() -> None:
    from timm_ccrop.evaluation import ProbeRecipe, linear_probe_features

    train, train_labels = separable_problem(0)
    test, test_labels = separable_problem(1, per_class=10)
    recipe = ProbeRecipe(epochs=20, batch_size=64, lr=1.0)
    result = linear_probe_features(train, train_labels, 6, recipe,
                                   {"test": (test, test_labels), "val": (test, test_labels)})
    assert result.accuracy["test"]["top1"] == 100.0
    assert result.accuracy["test"]["top5"] == 100.0
    assert [row["epoch"] for row in result.history] == list(range(1, 21))
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 5
    assert result.history[-1]["val_top1"] == 100.0
    # lr x0.1 after 60% and 80% of the epochs (12 and 16 of 20)
    assert [row["lr"] for row in result.history][11:13] == pytest.approx([1.0, 0.1])
    assert result.history[-1]["lr"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="feature size mismatch"):
        linear_probe_features(train, train_labels, 6, recipe, {"test": (test[:, :3], test_labels)})
    with pytest.raises(ValueError, match="unlabeled"):
        linear_probe_features(train, train_labels - 1, 6, recipe)


def test_fast_probe_equals_the_paper_probe_without_augmentation() -> None:
    import timm

    from timm_ccrop.data.synthetic import SyntheticObjects
    from timm_ccrop.evaluation import ProbeRecipe, linear_probe_features, linear_probe_images
    from timm_ccrop.localize import eval_transform

    torch.manual_seed(0)
    backbone = timm.create_model("test_resnet", num_classes=0).eval()
    train = SyntheticObjects(num_samples=40, image_size=16, num_classes=4, seed=2)
    test = SyntheticObjects(num_samples=12, image_size=16, num_classes=4, seed=2, split="test")
    transform = eval_transform(16, (0.5,) * 3, (0.5,) * 3)
    recipe = ProbeRecipe(epochs=4, batch_size=16, lr=0.5)  # 3 batches/epoch, last partial
    train_features, train_labels = extract_features(backbone, train, transform, batch_size=7,
                                                    progress=False)
    test_set = extract_features(backbone, test, transform, batch_size=5, progress=False)
    fast = linear_probe_features(train_features, train_labels, 4, recipe, {"test": test_set},
                                 seed=3)
    paper = linear_probe_images(backbone, train, 4, transform, recipe, {"test": test_set}, seed=3)
    assert (fast.mode, paper.mode, paper.augment) == ("fast", "paper", False)
    assert torch.allclose(fast.head.weight, paper.head.weight, atol=1e-4)
    assert torch.allclose(fast.head(test_set[0]), paper.head(test_set[0]), atol=1e-3)
    assert fast.accuracy == paper.accuracy
    for row_fast, row_paper in zip(fast.history, paper.history, strict=True):
        assert row_fast["loss"] == pytest.approx(row_paper["loss"], rel=1e-4)
    assert all(p.requires_grad for p in backbone.parameters())  # unfrozen again afterwards


def test_paper_probe_augments_and_counts_unreadable_images() -> None:
    import timm
    from PIL import Image

    from timm_ccrop.evaluation import ProbeRecipe, linear_probe_images, probe_train_transform

    class OneBroken(torch.utils.data.Dataset):
        targets = [0, 1, 0, 1, 0, 1]
        transform = None

        def __len__(self) -> int:
            return len(self.targets)

        def __getitem__(self, index: int):
            if index == 2:
                raise OSError("truncated file")
            return Image.new("RGB", (12, 12), (40 * index, 0, 0)), self.targets[index]

    torch.manual_seed(0)
    backbone = timm.create_model("test_resnet", num_classes=0)
    recipe = ProbeRecipe(epochs=2, batch_size=4)
    augment = probe_train_transform(16, (0.5,) * 3, (0.5,) * 3, recipe)
    with pytest.warns(UserWarning, match="unreadable"):
        result = linear_probe_images(backbone, OneBroken(), 2, augment, recipe)
    assert result.augment and result.skipped == 1 and len(result.history) == 2
    counters: dict[str, int] = {}
    with pytest.warns(UserWarning, match="unreadable"):
        extract_features(backbone, OneBroken(), augment, progress=False, counters=counters)
    assert counters == {"skipped": 1}


def test_shipped_probe_recipes_are_the_official_ones(tmp_path) -> None:
    from timm_ccrop.evaluation import list_probe_recipes, load_probe_recipe

    assert {"small", "imagenet"} <= set(list_probe_recipes())
    small, imagenet = load_probe_recipe("small"), load_probe_recipe("imagenet")
    for recipe, lr in ((small, 10.0), (imagenet, 30.0)):
        assert (recipe.epochs, recipe.batch_size, recipe.lr) == (100, 512, lr)
        assert (recipe.momentum, recipe.weight_decay, recipe.init_std) == (0.9, 0.0, 0.01)
        assert recipe.milestones() == [60, 80] and recipe.gamma == 0.1
    assert small.test_crop_pct == 1.0 and imagenet.test_crop_pct == 0.875
    assert small.replace(epochs=10).milestones() == [6, 8]
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 10\nlearning_rate: 3\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_probe_recipe(str(bad))
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_probe_recipe("no-such-recipe")


def test_validation_split_is_seeded_and_disjoint() -> None:
    from timm_ccrop.evaluation import split_validation

    train, val = split_validation(50, 0.2, seed=1)
    assert len(val) == 10 and sorted(train + val) == list(range(50))
    assert split_validation(50, 0.2, seed=1) == (train, val)
    assert split_validation(50, 0.2, seed=2)[1] != val
    assert split_validation(7, 0.0) == (list(range(7)), [])
    with pytest.raises(ValueError, match="no sample to train"):
        split_validation(1, 0.5)


def test_backbone_sources_resolve_and_load(tmp_path) -> None:
    import hashlib

    import timm
    import yaml
    from timm.models import save_for_hf

    from timm_ccrop.evaluation import load_backbone, resolve_backbone_source

    torch.manual_seed(0)
    model = timm.create_model("resnet_tiny_cifar", num_classes=0)
    # a run folder with only a checkpoint (the method's state: backbone.* + a head)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "resnet_tiny_cifar",
                                                      "data": "synthetic", "views": "cifar"}))
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    state["projector.weight"] = torch.zeros(2, 2)
    torch.save({"model": state, "epoch": 3}, run / "checkpoint-epoch0003.pt")
    source = resolve_backbone_source(str(run))
    assert (source.kind, source.folder, source.run_config["data"]) == ("checkpoint", run,
                                                                      "synthetic")
    loaded, info = load_backbone(source)
    assert info["epoch"] == 3 and info["sha256_of"] == "state_dict"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert tuple(loaded.pretrained_cfg["mean"]) == pytest.approx((0.4914, 0.4822, 0.4465))
    # after the export, the run folder uses backbone/ and hashes its weights file
    save_for_hf(model, run / "backbone", safe_serialization=True)
    source = resolve_backbone_source(str(run))
    assert (source.kind, source.folder) == ("export", run)
    loaded, info = load_backbone(source)
    weights = (run / "backbone" / "model.safetensors").read_bytes()
    assert info["sha256"] == hashlib.sha256(weights).hexdigest()
    assert resolve_backbone_source(str(run / "backbone")).folder == run / "backbone"
    # timm names: a plain architecture is a seeded random init
    baseline = resolve_backbone_source("resnet_tiny_cifar")
    assert (baseline.kind, baseline.pretrained, baseline.folder) == ("timm", False, None)
    first, second = load_backbone(baseline, seed=4)[1], load_backbone(baseline, seed=4)[1]
    assert first["sha256"] == second["sha256"] and first["random_init"]
    # errors, before anything is loaded
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_backbone_source(str(tmp_path / "missing-run"))
    with pytest.raises(FileNotFoundError, match="holds no backbone"):
        resolve_backbone_source(str(tmp_path))
    with pytest.raises(ValueError, match="did you mean"):
        resolve_backbone_source("resnet_tiny_cifra")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_backbone_source(f"local-dir:{tmp_path / 'nothing'}")


# --------------------------------------------------------------------------------------
# The seams between the evaluation modules
# --------------------------------------------------------------------------------------


def test_single_process_helpers_are_plain() -> None:
    from timm_ccrop.evaluation import ProbeRecipe, ProbeSettings, fits_on, sum_over_processes

    assert sum_over_processes(None, 3) == 3 and isinstance(sum_over_processes(None, 3), int)
    assert sum_over_processes(None, 2.5) == 2.5
    assert fits_on(torch.device("cpu"), 10**15)
    assert not fits_on(torch.device("meta"), 3 * 1024**3)
    settings = ProbeSettings(ProbeRecipe(), 4, {}, 0, torch.device("cpu"), progress=True)
    assert settings.processes == 1 and settings.shows_progress


def test_dataset_targets_avoid_loading_images() -> None:
    from timm_ccrop.evaluation import dataset_targets

    class NoImages(torch.utils.data.Dataset):
        targets = [3, 1, 2, 0]

        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int):
            raise AssertionError("an image was loaded")

    assert dataset_targets(NoImages()) == [3, 1, 2, 0]
    assert dataset_targets(torch.utils.data.Subset(NoImages(), [2, 0])) == [2, 3]
    assert dataset_targets([("a", 5), ("b", 6)]) == [5, 6]


def test_labelled_split_names_the_role_and_the_splits() -> None:
    from timm_ccrop.data import parse_data_spec
    from timm_ccrop.evaluation import labelled_split

    spec = parse_data_spec("synthetic:num_samples=6")
    assert len(labelled_split(spec, "train", "train")) == 6
    with pytest.raises(ValueError, match="test split 'val'"):
        labelled_split(spec, "val", "test")


def test_resolve_inputs_checks_before_loading(tmp_path) -> None:
    from timm_ccrop.evaluation import EvalConfig, resolve_inputs

    base = dict(backbone="resnet_tiny_cifar", data="synthetic:num_samples=10",
                output=str(tmp_path / "out"))
    inputs = resolve_inputs(EvalConfig(**base, val_fraction=0.2))
    assert (inputs.source.kind, inputs.train_split, inputs.test_split) == ("timm", "train",
                                                                           "test")
    assert len(inputs.val_indices) == 2 and len(inputs.train_indices) == 8
    assert inputs.recipe is None  # 'auto' waits for the input size
    assert inputs.output == tmp_path / "out" / "eval.json" and not inputs.output.exists()
    assert resolve_inputs(EvalConfig(**base, probe_recipe="small")).recipe.name == "small"
    assert resolve_inputs(EvalConfig(**base, protocol="knn", probe_recipe="small")).recipe \
        is None
    with pytest.raises(ValueError, match="knn_temperature must be > 0"):
        resolve_inputs(EvalConfig(**base, knn_temperature=0))
    with pytest.raises(FileNotFoundError, match="shipped"):
        resolve_inputs(EvalConfig(**base, probe_recipe="no-such-recipe"))


def test_preprocessing_and_probe_augmentation() -> None:
    from PIL import Image
    from torchvision import transforms

    from timm_ccrop.evaluation import (
        Preprocessing,
        ProbeRecipe,
        is_augmenting,
        probe_train_transform,
    )

    preprocessing = Preprocessing(16, (0.5,) * 3, (0.5,) * 3, 1.0, "bilinear", "center")
    assert preprocessing.transform()(Image.new("RGB", (40, 30))).shape == (3, 16, 16)
    assert preprocessing.to_dict() == {"image_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3,
                                       "crop_pct": 1.0, "interpolation": "bilinear"}
    assert not is_augmenting(preprocessing.transform())
    assert is_augmenting(probe_train_transform(16, (0.5,) * 3, (0.5,) * 3, ProbeRecipe()))
    assert not is_augmenting(transforms.ToTensor())


def test_results_path_and_writing(tmp_path) -> None:
    import json
    from pathlib import Path

    import timm_ccrop
    from timm_ccrop.evaluation import EvalConfig, resolve_backbone_source, results_path
    from timm_ccrop.evaluation.results import finish_results, write_results

    source = resolve_backbone_source("resnet_tiny_cifar")
    assert results_path(EvalConfig("x"), source) == Path("runs/eval/resnet_tiny_cifar/eval.json")
    chosen = tmp_path / "mine.json"
    assert results_path(EvalConfig("x", output=str(chosen)), source) == chosen
    report = finish_results({"where": tmp_path}, chosen, {"train": 1, "test": 0}, {"x_s": 1.0})
    assert report["versions"]["timm_ccrop"] == timm_ccrop.__version__
    assert report["output"] == str(chosen.resolve())
    write_results(chosen, report)
    written = json.loads(chosen.read_text())
    assert written["where"] == str(tmp_path) and written["skipped_unreadable"]["train"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["mine.json"]  # no temporary left
