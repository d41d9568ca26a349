"""Channel statistics of the datasets the paper uses, and the kNN protocol's defaults
(a primitive: no imports).

Two CIFAR-10 stds circulate: the exact training-set channel std (0.2470, 0.2435,
0.2616), which our own recipes use, and the official code's (0.2023, 0.1994, 0.2010),
the mean of per-image stds, which converted official checkpoints must keep.
"""

from __future__ import annotations

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "KNN_K", "KNN_TEMPERATURE",
           "MIN_IMAGE_SIZE"]

#: CIFAR-10 training-set channel statistics (the exact ones).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
#: timm's ImageNet defaults, repeated here so that primitives need not import timm.data.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The kNN protocol of the paper's evaluation (InstDisc's weighted vote): 200 neighbours,
#: vote weights exp(similarity / 0.1).
KNN_K = 200
KNN_TEMPERATURE = 0.1
#: The smallest input size (pixels) the package accepts anywhere (data, pretraining, eval).
MIN_IMAGE_SIZE = 8
