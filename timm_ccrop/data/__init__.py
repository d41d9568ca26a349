"""One home for datasets: the kinds and their readers, the built-in synthetic set, and the
box-carrying wrapper and sampler."""

from .boxed import (  # noqa: F401
    BoxedDataset,
    EpochPermutationSampler,
    sample_seed,
    seed_everything,
    split_sample,
)
from .datasets import (  # noqa: F401
    CIFAR_URL,
    KINDS,
    STL10_URL,
    TINY_IMAGENET_SIZE,
    TINY_IMAGENET_URL,
    CifarDataset,
    DatasetSpec,
    FolderDataset,
    ImageDatasetBase,
    LabeledImageDataset,
    STL10Dataset,
    TinyImageNetDataset,
    UnsafePickleError,
    build_dataset,
    default_eval_split,
    default_train_split,
    load_cifar_pickle,
    parse_data_spec,
    split_names,
)
from .synthetic import (  # noqa: F401
    SHAPE_NAMES,
    SyntheticObjects,
)
