"""Where a trial's images live: untouched on a CPU; the GPU budget and the size it is compared with."""
import torch

from trainables.data.base import ImageData, LazyImages, Split
from trainables.placement import gpu_budget, in_memory_bytes, place


def data(n: int = 4) -> ImageData:
    return ImageData({"train": Split(torch.zeros(n, 3, 8, 8, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)),
                      "val": Split(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))},
                     ["a", "b"], 8)


def test_cpu_training_leaves_the_data_as_it_is():
    d = data()
    placed, where = place(d, torch.device("cpu"), 4096)
    assert placed is d and "CPU" in where


def test_size_counts_images_and_labels_of_in_memory_splits_only():
    d = data(4)
    assert in_memory_bytes(d) == (4 + 2) * 3 * 8 * 8 + (4 + 2) * 8
    lazy = LazyImages.__new__(LazyImages)
    d.splits["test"] = Split(lazy, torch.zeros(5, dtype=torch.long))
    assert in_memory_bytes(d) == (4 + 2) * 3 * 8 * 8 + (4 + 2) * 8


def test_the_budget_is_the_setting_but_at_most_a_quarter_of_the_free_gpu_memory():
    gib = 2**30
    assert gpu_budget(4096, 80 * gib) == 4 * gib
    assert gpu_budget(4096, 8 * gib) == 2 * gib
    assert gpu_budget(0, 80 * gib) == 0
    assert gpu_budget(-1, 80 * gib) == 0
