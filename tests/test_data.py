"""Input pipeline: real MNIST through TFDS, shapes, ranges, determinism, host sharding, errors."""
import numpy as np
import pytest

from ipgan_jax.data import pipeline
from ipgan_jax.data.wheels import DatasetNotFoundError
from ipgan_jax.errors import ConfigError


@pytest.fixture(scope="module")
def mnist_train():
    return pipeline.get_source("mnist", "train")


def test_full_mnist_sizes_and_record_format(mnist_train):
    test = pipeline.get_source("mnist", "test")
    assert len(mnist_train) == 60000 and len(test) == 10000
    rec = mnist_train[0]
    assert rec["image"].shape == (28, 28, 1) and rec["image"].dtype == np.uint8
    labels = np.asarray([int(test[i]["label"]) for i in range(0, 10000, 7)])
    assert set(labels.tolist()) == set(range(10))


def test_mnist_records_keep_the_canonical_order(mnist_train):
    """Record i is MNIST's i-th image (TFDS shuffling disabled): "the first N test images" are the
    ones AutoAttack / RobustBench evaluate on."""
    test = pipeline.get_source("mnist", "test")
    assert [int(test[i]["label"]) for i in range(5)] == [7, 2, 1, 0, 4]
    assert [int(mnist_train[i]["label"]) for i in range(5)] == [5, 0, 4, 1, 9]
    with np.load(pipeline.fetch_mnist_cached_or_raise()) as z:
        for i in (0, 1, 9999):
            np.testing.assert_array_equal(test[i]["image"], z["test_images"][i])
        np.testing.assert_array_equal(mnist_train[59999]["image"], z["train_images"][59999])


def test_evaluation_can_start_at_a_later_test_image():
    """``first_test_record`` (``eval.first_test_image``): the held-out slice 5000.. in canonical order."""
    test = pipeline.get_source("mnist", "test")
    loader = pipeline.make_loader("mnist", "test", 4, train=False, num_examples=6, first_test_record=5000)
    b = next(iter(loader.iterate(prefetch=0)))
    assert loader.n == 6
    np.testing.assert_array_equal(b["label"], [int(test[5000 + i]["label"]) for i in range(4)])
    np.testing.assert_allclose(b["image"][0], test[5000]["image"] / 255.0)
    for bad, split in ((10000, "test"), (-1, "test"), (5, "train")):
        with pytest.raises(ConfigError, match="first_test_record"):
            pipeline.make_loader("mnist", split, 4, train=False, first_test_record=bad)


def test_batches_shapes_ranges_and_determinism(mnist_train):
    a = pipeline.Loader(mnist_train, 64, seed=3, num_examples=2048)
    b = pipeline.Loader(mnist_train, 64, seed=3, num_examples=2048)
    c = pipeline.Loader(mnist_train, 64, seed=4, num_examples=2048)
    ba = a.batch(5)
    assert ba["image"].shape == (64, 28, 28, 1) and ba["image"].dtype == np.float32
    assert ba["label"].shape == (64,) and ba["label"].dtype == np.int32
    assert 0.0 <= ba["image"].min() and ba["image"].max() <= 1.0 and ba["image"].max() > 0.9
    np.testing.assert_array_equal(ba["image"], b.batch(5)["image"])
    assert not np.array_equal(ba["label"], c.batch(5)["label"])
    # iterate(start) resumes exactly where batch(start) is
    it = list(a.iterate(4, num_steps=2))
    np.testing.assert_array_equal(it[1]["image"], ba["image"])
    # one epoch visits every example once; the next epoch is reshuffled
    spe = a.steps_per_epoch
    seen = np.concatenate([a._order(0)[k * 64:(k + 1) * 64] for k in range(spe)])
    assert len(np.unique(seen)) == spe * 64
    assert not np.array_equal(a._order(0), a._order(1))


def test_host_sharding_splits_global_batch(mnist_train):
    full = pipeline.Loader(mnist_train, 64, seed=1, num_examples=1024, process_index=0, process_count=1)
    h0 = pipeline.Loader(mnist_train, 64, seed=1, num_examples=1024, process_index=0, process_count=2)
    h1 = pipeline.Loader(mnist_train, 64, seed=1, num_examples=1024, process_index=1, process_count=2)
    g = full.batch(2)["label"]
    np.testing.assert_array_equal(np.concatenate([h0.batch(2)["label"], h1.batch(2)["label"]]), g)
    with pytest.raises(ValueError, match="divisible"):
        pipeline.Loader(mnist_train, 63, num_examples=1024, process_index=0, process_count=2)


def test_eval_pass_is_ordered_complete_and_masked():
    loader = pipeline.make_loader("mnist", "test", 64, train=False, num_examples=150)
    batches = list(loader.iterate())
    assert len(batches) == 3
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.sum() == 150 and masks[:150].all() and not masks[150:].any()


def test_imagenet_sample_through_same_pipeline():
    loader = pipeline.make_loader("imagenet_sample", "test", 20, train=False, image_size=224)
    b = loader.batch(0)
    assert b["image"].shape == (20, 224, 224, 3) and b["mask"].all()
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    assert b["label"].tolist()[:3] == [243, 559, 438]   # imagenet_00_243.jpg, ... in file order


def test_missing_dataset_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IPGAN_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("IPGAN_AUTO_FETCH", "0")
    with pytest.raises(DatasetNotFoundError, match="python -m ipgan_jax.data.fetch mnist"):
        pipeline.get_source("mnist", "train", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DatasetNotFoundError, match="manual_dir"):
        pipeline.get_source("imagenet2012", "train", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="unknown dataset"):
        pipeline.get_source("cifar10", "train")


@pytest.mark.slow
def test_validation_split_is_the_end_of_train_and_disjoint_from_it():
    train = pipeline.make_loader("mnist", "train", 100, train=False, validation_size=5000)
    val = pipeline.make_loader("mnist", "validation", 100, train=False, validation_size=5000)
    full = pipeline.make_loader("mnist", "train", 100, train=False)
    assert (train.n, val.n, full.n) == (55000, 5000, 60000)
    np.testing.assert_array_equal(val.batch(0)["image"], full.batch(550)["image"])
    np.testing.assert_array_equal(train.batch(549)["image"], full.batch(549)["image"])
    with pytest.raises(ValueError, match="validation"):
        pipeline.make_loader("mnist", "validation", 100, train=False)
