"""The challenge's data sets: names, classes, points and default scores (HACKATHON.md)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the challenge says of one data set.

    Attributes:
        id: numeric id, the `exercise_id` of the reveal API.
        name: folder name, `<id>_<name>` as in the challenge repository.
        classes: label values in order, or None where they are only known from the data.
        points: weight of the set in the total score.
        default_score: score given when a user does not submit.
        sizes: (labeled, unlabeled, target) of the original files, where known.
        generatable: whether `generator.generate` can build it offline.
    """
    id: int
    name: str
    classes: tuple[int, ...] | None
    points: float
    default_score: float = 0.80
    sizes: tuple[int, int, int] | None = None
    generatable: bool = True


CATALOG: dict[int, DatasetInfo] = {info.id: info for info in [
    DatasetInfo(0, "00_toy_dataset", (0, 1), 1),
    DatasetInfo(1, "01_mnist_cc", (0, 1), 1, sizes=(1267, 3798, 1267)),
    DatasetInfo(2, "02_mnist_constant_image", (0, 2), 1, sizes=(1188, 3564, 1188)),
    DatasetInfo(3, "03_mnist_constant_image_random_row", (0, 3), 2),
    DatasetInfo(4, "04_mnist_uniform_color_random_row", (0, 4), 1),
    DatasetInfo(5, "05_mnist_uniform_color_low_mix_rate", (0, 5), 2),
    DatasetInfo(6, "06_mnist_sum", (0, 6), 1),
    DatasetInfo(7, "07_mnist_sum_bis", (0, 7), 1),
    DatasetInfo(8, "08_mnist_sum_noise_level", (0, 8), 1),
    DatasetInfo(12, "12_mnist_mysterious", (1, 2), 3, sizes=(889, 3809, 381)),
    DatasetInfo(13, "13_mnist_mysterious", (1, 3), 3, sizes=(900, 3861, 387)),
    DatasetInfo(23, "23_mnist_embed", (2, 3), 3, sizes=(1209, 3625, 1209)),
    DatasetInfo(456, "456_mnist_embed", (4, 5, 6), 3, sizes=(1718, 5153, 1718)),
    DatasetInfo(888, "888_vehicle_animal", (0, 1), 8, default_score=0.5,
                sizes=(10_000, 20_000, 20_000)),
    DatasetInfo(999, "999_humans", None, 5, default_score=0.5, generatable=False),
]}

GENERATABLE_IDS = tuple(i for i, info in CATALOG.items() if info.generatable)


def info_for(dataset_id: int, folder_name: str | None = None) -> DatasetInfo:
    """The catalogue entry of a set; an unknown id gets 1 point and the 0.80 default."""
    if dataset_id in CATALOG:
        return CATALOG[dataset_id]
    return DatasetInfo(dataset_id, folder_name or str(dataset_id), None, 1, generatable=False)
