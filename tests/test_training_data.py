"""Cases, splits, label remapping, the preprocessed cache, the sample stream and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from algorithm.labels import Lobe
from training.data import label_maps, samples
from training.data.cases import discover_folder, load_cases
from training.config import AugmentConfig, DataConfig
from training.data.toy import toy_case, write_toy_dataset


def test_remap_totalsegmentator_and_lungmask_to_paper():
    ts = np.array([0, 10, 11, 12, 13, 14, 5, 51])
    np.testing.assert_array_equal(label_maps.remap_labels(ts, "totalsegmentator"), [0, 1, 2, 3, 5, 4, 0, 0])
    lm = np.array([0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(label_maps.remap_labels(lm, "lungmask"), [0, 1, 2, 3, 5, 4])
    np.testing.assert_array_equal(label_maps.remap_labels(lm, "paper"), lm)
    np.testing.assert_array_equal(label_maps.remap_labels(np.array([7, 8, 0]), {7: 2, 8: 4}), [2, 4, 0])


def test_folder_pairs_by_name_across_suffixes(tmp_path):
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    image, label = toy_case(0, (8, 8, 8))
    sitk.WriteImage(image, str(tmp_path / "images" / "a.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "labels" / "a.mha"))
    sitk.WriteImage(image, str(tmp_path / "images" / "b.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "labels" / "b.nii.gz"))
    cases = discover_folder(tmp_path)
    assert [c.name for c in cases] == ["a", "b"]
    assert cases[0].label.name == "a.mha" and cases[1].image.name == "b.nrrd"
    sitk.WriteImage(image, str(tmp_path / "images" / "c.mha"))
    with pytest.raises(FileNotFoundError):
        discover_folder(tmp_path)


def test_splits_are_reproducible_written_and_respect_csv(tmp_path):
    root = write_toy_dataset(tmp_path / "toy", range(10), size_zyx=(8, 8, 8))
    config = DataConfig(root=str(root), val_fraction=0.2, test_fraction=0.2, split_seed=3)
    first = load_cases(config, tmp_path / "run1" / "splits.csv")
    second = load_cases(config, tmp_path / "run2" / "splits.csv")
    assert [(c.name, c.split) for c in first] == [(c.name, c.split) for c in second]
    assert sorted(c.split for c in first).count("test") == 2 and sorted(c.split for c in first).count("val") == 2
    # an existing splits.csv wins over the config (the experiment's split never changes)
    again = load_cases(DataConfig(root=str(root), split_seed=99), tmp_path / "run1" / "splits.csv")
    assert [(c.name, c.split) for c in again] == [(c.name, c.split) for c in first]
    # a CSV with a split column keeps it; relative paths are relative to the CSV
    csv_path = tmp_path / "toy" / "cases.csv"
    csv_path.write_text("image,label,split\nimages/toy-0000.mha,labels/toy-0000.mha,test\nimages/toy-0001.mha,labels/toy-0001.mha,\n")
    cases = load_cases(DataConfig(csv=str(csv_path), val_fraction=0.0, test_fraction=0.0), tmp_path / "run3" / "splits.csv")
    assert [(c.name, c.split) for c in cases] == [("toy-0000", "test"), ("toy-0001", "train")]
    assert cases[0].image.is_file()


def test_cache_is_keyed_by_content_and_settings(tmp_path):
    root = write_toy_dataset(tmp_path / "toy", [0, 1], size_zyx=(16, 20, 20))
    cases = discover_folder(root)
    cache = samples.PreprocessedCache(tmp_path / "cache", 16, "paper")
    key = cache.ensure(cases[0])
    assert cache.ensure(cases[0]) == key  # second call: cached
    scan = cache.open(key)
    assert isinstance(scan.image, np.memmap) and scan.image.dtype == np.float16
    assert scan.image.shape[1:] == (16, 16) and scan.labels.shape == scan.image.shape
    assert set(np.unique(scan.labels)) <= set(range(6))
    assert samples.PreprocessedCache(tmp_path / "cache", 24, "paper").key(cases[0]) != key
    assert cache.key(cases[1]) != key


def test_sample_stream_is_a_function_of_the_step(tmp_path):
    root = write_toy_dataset(tmp_path / "toy", range(3), size_zyx=(16, 20, 20))
    cache = samples.PreprocessedCache(tmp_path / "cache", 16, "paper")
    keys = [cache.ensure(c) for c in discover_folder(root)]
    full = samples.TrainSamples(cache, keys, AugmentConfig(), seed=5, rank=0, world_size=1, start_step=0, end_step=6)
    tail = samples.TrainSamples(cache, keys, AugmentConfig(), seed=5, rank=0, world_size=1, start_step=4, end_step=6)
    for i in range(2):
        a, b = full[4 + i], tail[i]
        assert a["step"] == b["step"] and a["name"] == b["name"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
    # every epoch visits every case once; two ranks see different cases at the same step
    seen = [samples.case_index_for_step(s, 0, 1, 3, 5) for s in range(6)]
    assert sorted(seen[:3]) == [0, 1, 2] and sorted(seen[3:]) == [0, 1, 2]
    assert samples.case_index_for_step(0, 0, 2, 3, 5) != samples.case_index_for_step(0, 1, 2, 3, 5)


def test_augmentation_never_mirrors_left_right():
    image, label = toy_case(0, (24, 32, 32))
    img = torch.from_numpy((sitk.GetArrayFromImage(image).astype(np.float32) + 1200) / 1600).clamp(0, 1)
    lab = torch.from_numpy(sitk.GetArrayFromImage(label))
    strong = AugmentConfig(rotate_deg=(10.0, 5.0, 5.0), scale_range=(0.9, 1.1), probability=1.0)
    for seed in range(20):
        _, out = samples.augment(img, lab, strong, np.random.default_rng(seed))
        x = torch.arange(out.shape[2]).float()
        left = x[torch.nonzero(out == Lobe.LUL)[:, 2]].mean()
        right = x[torch.nonzero(out == Lobe.RUL)[:, 2]].mean()
        assert left > right  # +x is patient left (LPS): left lobes stay at larger x
        upper = torch.nonzero(out == Lobe.LUL)[:, 0].float().mean()
        lower = torch.nonzero(out == Lobe.LLL)[:, 0].float().mean()
        assert upper > lower  # +z superior: no up-down mirror either
    for seed in range(50):
        theta = samples.random_affine(strong, np.random.default_rng(seed))
        assert torch.det(theta[:, :3]) > 0
