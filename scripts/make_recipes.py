"""Write zoo/recipes/*.yaml: the paper's settings (../shared/REFERENCE.md, section 3).

One file per dataset x method x crop mode, self-contained so a recipe reads on its own.
Rerun after changing the table below; the tests load and validate every recipe.

    python scripts/make_recipes.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent.parent / "zoo" / "recipes"

SMALL = {
    "model": "resnet18_cifar",
    "epochs": 500, "box_warmup_epochs": 100, "loc_interval": 100,
    "batch_size": 512, "optimizer": "sgd", "lr": 0.5, "lr_warmup_epochs": 0.0,
    "min_lr_ratio": 0.1, "momentum": 0.9,
    "weight_decay": 1.0e-4, "alpha": 0.1, "localizer": "paper",
    "num_workers": 8, "knn_every": 10,
}
DATASETS = {
    "cifar10": {**SMALL, "data": "cifar10:data/cifar10", "views": "cifar"},
    "cifar100": {**SMALL, "data": "cifar100:data/cifar100", "views": "cifar"},
    "stl10": {**SMALL, "data": "stl10:data/stl10", "views": "stl10"},
    "tiny-imagenet": {
        **SMALL, "data": "tiny-imagenet:data/tiny-imagenet", "views": "tiny-imagenet",
    },
    "imagenet": {
        "model": "resnet50", "data": "folder:data/imagenet", "views": "imagenet",
        "epochs": 100, "box_warmup_epochs": 20, "loc_interval": 20, "batch_size": 256,
        "optimizer": "sgd", "lr": 0.03, "lr_warmup_epochs": 0.0, "momentum": 0.9,
        "weight_decay": 1.0e-4,
        "alpha": 0.6, "localizer": "paper",
        "num_workers": 16, "knn_every": 10, "mixed_precision": "bf16",
    },
}
SMALL_METHODS = {
    "simclr": {"temperature": 0.5, "base_temperature": 0.07},
    "moco": {"queue_size": 65536, "temperature": 0.2, "momentum": 0.999},
    "byol": {"momentum": 0.996, "momentum_schedule": "constant"},
    "simsiam": {"hidden_dim": 512, "out_dim": 512, "pred_hidden_dim": 128,
                "fixed_predictor_lr": True},
}
IMAGENET_METHODS = {
    "simclr": {"hidden_dim": 2048, "out_dim": 128, "temperature": 0.2},
    "moco": {"hidden_dim": 2048, "out_dim": 128, "queue_size": 65536, "temperature": 0.2,
             "momentum": 0.999},
    "byol": {"hidden_dim": 4096, "out_dim": 256, "pred_hidden_dim": 4096, "momentum": 0.996,
             "momentum_schedule": "cosine"},
    "simsiam": {"hidden_dim": 2048, "out_dim": 2048, "pred_hidden_dim": 512,
                "fixed_predictor_lr": True},
}
SOURCES = {
    "cifar10": "REFERENCE.md s3 (official small-dataset configs)",
    "imagenet": "REFERENCE.md s3 (ImageNet MoCo v2); other methods' heads follow their papers",
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.yaml"):
        old.unlink()
    for dataset, base in DATASETS.items():
        methods = IMAGENET_METHODS if dataset == "imagenet" else SMALL_METHODS
        for method, kwargs in methods.items():
            for crop in ("rcrop", "ccrop"):
                name = f"{dataset}-{method}-{crop}"
                recipe = {
                    "description": (
                        f"{method} on {dataset}, {crop}; "
                        f"{SOURCES.get(dataset, SOURCES['cifar10'])}"
                    ),
                    **base,
                    # timm zero-inits each block's last BN by default; the official code
                    # does so only for SimSiam (zero_init_residual).
                    "model_kwargs": {"zero_init_last": method == "simsiam"},
                    "method": method, "method_kwargs": kwargs, "crop": crop,
                    "output": f"runs/{name}",
                }
                (OUT / f"{name}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    print(f"wrote {len(list(OUT.glob('*.yaml')))} recipes to {OUT}")


if __name__ == "__main__":
    main()
