import numpy as np
import pytest
import torch

from cellscreen.data import cache as cache_module
from cellscreen.data.augment import augment_batch, dihedral_views
from cellscreen.data.cache import CacheSpec, build_cache
from cellscreen.data.images import load_rgb, resize_square
from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.errors import UserError
from tests.badfiles import write_all
from tests.conftest import write_cell

MALARIA = get_profile("malaria-nih")


def scan(folder):
    return scan_dataset(folder, MALARIA, workers=0, progress=False)


def test_cache_holds_preprocessed_pixels_and_is_reused(malaria_like, tmp_path):
    index = scan(malaria_like)
    first = build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path / "c", progress=False)
    assert first.built and first.images.shape == (72, 16, 16, 3) and first.images.dtype == np.uint8
    record = index.records[5]
    expected = resize_square(load_rgb(malaria_like / record.path), 16)
    assert np.array_equal(first.get(record.sha256), expected)
    second = build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path / "c", progress=False)
    assert not second.built and second.folder == first.folder


def test_changed_file_or_parameter_rebuilds(malaria_like, tmp_path):
    index = scan(malaria_like)
    base = build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path, progress=False)
    other_size = build_cache(malaria_like, index.records, CacheSpec(size=20), cache_dir=tmp_path, progress=False)
    cropped = build_cache(malaria_like, index.records, CacheSpec(size=16, border_crop=2), cache_dir=tmp_path, progress=False)
    exact = build_cache(malaria_like, index.records, CacheSpec(size=16, interpolation="bicubic"), cache_dir=tmp_path,
                        progress=False)
    record = index.records[0]
    assert np.array_equal(exact.get(record.sha256), resize_square(load_rgb(malaria_like / record.path), 16, "bicubic"))
    write_cell(malaria_like / index.records[0].path, seed=4242)  # the lab re-exported one cell
    changed = build_cache(malaria_like, scan(malaria_like).records, CacheSpec(size=16), cache_dir=tmp_path, progress=False)
    folders = {base.folder, other_size.folder, cropped.folder, exact.folder, changed.folder}
    assert len(folders) == 5 and other_size.built and cropped.built and exact.built and changed.built


def test_interrupted_build_resumes_where_it_stopped(malaria_like, tmp_path, monkeypatch):
    index = scan(malaria_like)
    monkeypatch.setattr(cache_module, "_CHUNK", 10)
    calls = []
    real = cache_module._preprocess_into

    def crash_after_25(item, **kwargs):
        calls.append(item[0])
        if len(calls) > 25:
            raise KeyboardInterrupt
        return real(item, **kwargs)

    monkeypatch.setattr(cache_module, "_preprocess_into", crash_after_25)
    with pytest.raises(KeyboardInterrupt):
        build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path, workers=0, progress=False)
    assert not any(tmp_path.glob("*/meta.json"))  # an unfinished cache is never mistaken for a finished one
    calls.clear()
    monkeypatch.setattr(cache_module, "_preprocess_into", lambda item, **kw: calls.append(item[0]) or real(item, **kw))
    resumed = build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path, workers=0, progress=False)
    assert len(calls) == 72 - 20  # the 20 checkpointed images are not decoded again
    for record in index.records:
        assert np.array_equal(resumed.get(record.sha256), resize_square(load_rgb(malaria_like / record.path), 16))


def _build_in_child(args):
    root, records, cache_dir = args
    result = build_cache(root, records, CacheSpec(size=16), cache_dir=cache_dir, workers=0, progress=False)
    return result.built, np.asarray(result.images).copy()


def test_two_processes_building_one_cache_share_it(malaria_like, tmp_path):
    import multiprocessing

    index = scan(malaria_like)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_build_in_child, [(malaria_like, index.records, tmp_path)] * 2)
    assert sorted(built for built, _ in results) == [False, True]  # one built it, the other waited and reused it
    assert np.array_equal(results[0][1], results[1][1])
    for record in index.records:
        expected = resize_square(load_rgb(malaria_like / record.path), 16)
        assert np.array_equal(build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path,
                                          progress=False).get(record.sha256), expected)


def test_file_broken_after_indexing_is_skipped(malaria_like, tmp_path):
    index = scan(malaria_like)
    victim = index.records[0]
    (malaria_like / victim.path).write_bytes(b"")
    cache = build_cache(malaria_like, index.records, CacheSpec(size=16), cache_dir=tmp_path, progress=False)
    assert victim.sha256 not in cache and len(cache.row_of) == 71
    assert [(s.path, s.reason) for s in cache.skipped] == [(victim.path, "empty file (0 bytes)")]


def test_odd_formats_cache_like_any_other(tmp_path):
    bad = write_all(tmp_path / "Parasitized")
    for path, _ in bad.values():
        path.rename(path.with_name("C1_" + path.name))
    write_cell(tmp_path / "Uninfected" / "C2_a.png", seed=3)
    index = scan(tmp_path)
    cache = build_cache(tmp_path, index.records, CacheSpec(size=12), cache_dir=tmp_path / "c", progress=False)
    assert len(cache.row_of) == len(index.records) == 9


def test_size_out_of_range_is_a_user_error():
    with pytest.raises(UserError):
        CacheSpec(size=4)
    with pytest.raises(UserError, match="unknown interpolation 'nearest'"):
        CacheSpec(size=16, interpolation="nearest")


def test_augmentation_draws_each_image_its_own_symmetry():
    image = torch.arange(3 * 5 * 5, dtype=torch.uint8).reshape(1, 3, 5, 5)
    views = {v.numpy().tobytes() for v in dihedral_views(image[0])}
    assert len(views) == 8
    torch.manual_seed(0)
    batch = augment_batch(image.repeat(200, 1, 1, 1), rotate_flip=True, color_jitter=0.0)
    seen = {b.numpy().tobytes() for b in batch}
    assert seen == views  # every one of the 8 symmetries, nothing else (exact: no interpolation)
    jittered = augment_batch(image.repeat(50, 1, 1, 1), rotate_flip=False, color_jitter=0.2)
    assert jittered.min() >= 0 and jittered.max() <= 1
    assert len({round(float(j.mean()), 5) for j in jittered}) > 10  # brightness differs per image


def test_stain_jitter_tints_each_image_its_own_way_and_keeps_grey_grey():
    torch.manual_seed(0)
    pink = torch.tensor([200, 120, 160], dtype=torch.uint8).view(1, 3, 1, 1).expand(40, 3, 6, 6).contiguous()
    tinted = augment_batch(pink, rotate_flip=False, stain_jitter=0.2)
    assert tinted.min() >= 0 and tinted.max() <= 1
    ratios = {round(float(t[0, 0, 0] / t[1, 0, 0]), 4) for t in tinted}  # red/green balance changes per image
    assert len(ratios) > 30
    base = pink[0].float() / 255
    assert (tinted - base).abs().amax(dim=(1, 2, 3)).max() <= 0.2 * 1.2 + 1e-6  # bounded by gain and saturation
    assert augment_batch(pink, rotate_flip=False) is pink  # off by default: the uint8 batch as it came
