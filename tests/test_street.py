"""The synthetic street benchmark: deterministic, readable by the dataset readers, every anomaly type with tracks."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mmp_repro.scene import Region, region_map
from mmp_repro.street import (ANOMALY_TYPES, COCO, StreetConfig, make_street, read_oracle)
from mmp_repro.tracks import load_videos
from mmp_repro.video import read_dataset


def digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    cfg = StreetConfig.for_scale('smoke', seed=3, n_test=3)
    return cfg, make_street(cfg, tmp_path_factory.mktemp('street') / 'street')


def test_same_seed_same_bytes_other_seed_other_frames(smoke, tmp_path):
    cfg, root = smoke
    again = make_street(cfg, tmp_path / 'again')
    assert digest(root) == digest(again)
    other = make_street(StreetConfig.for_scale('smoke', seed=4, n_test=3), tmp_path / 'other')
    a, b = digest(root), digest(other)
    assert a.keys() == b.keys()
    assert a['testing/frames/01_0001/000.jpg'] != b['testing/frames/01_0001/000.jpg']


def test_reads_back_through_the_readers(smoke):
    cfg, root = smoke
    test, train = load_videos('street', root, 'test'), read_dataset('street', root, 'train')
    assert [v.name for v in train] == ['01_001', '01_002'] and [v.name for v in test] == ['01_0001', '01_0002', '01_0003']
    assert all(v.num_frames == cfg.test_frames and v.size == (cfg.height, cfg.width) and v.fps == cfg.fps for v in test)
    assert train[0].read_frame(cfg.train_frames - 1).shape == (cfg.height, cfg.width, 3)
    for v in test:
        r = v.regions
        assert len(r) and r[:, 2:].min() >= 0 and r[:, [2, 4]].max() < cfg.width and r[:, [3, 5]].max() < cfg.height
        assert (r[:, 4] >= r[:, 2]).all() and (r[:, 5] >= r[:, 3]).all()
        # a frame is anomalous exactly when it has a region, and then its pixel mask is not empty
        assert np.flatnonzero(v.labels).tolist() == sorted(set(r[:, 1].tolist()))
        assert [bool(v.read_mask(t).any()) for t in range(v.num_frames)] == v.labels.astype(bool).tolist()
        assert v.labels[: int(0.15 * v.num_frames)].sum() == 0  # every test video starts with normal frames


def test_every_anomaly_type_has_tracks(smoke):
    cfg, root = smoke
    objs = pd.read_csv(root / 'objects.csv', dtype={'video': str})
    anom = objs[objs.anomaly != 'normal']
    assert set(anom.anomaly) == set(ANOMALY_TYPES)
    assert (objs[objs.split == 'train'].anomaly == 'normal').all()
    test = {v.name: v for v in load_videos('street', root, 'test')}
    for _, o in anom.iterrows():
        track = test[o.video].regions[test[o.video].regions[:, 0] == o.track_id]
        assert len(track) == o.anomalous_frames >= 3, o.to_dict()
    assert len(anom) == cfg.n_test * cfg.anomalies_per_video


def test_oracle_detections_hold_every_object_in_view(smoke):
    cfg, root = smoke
    objs = pd.read_csv(root / 'objects.csv', dtype={'video': str})
    for v in load_videos('street', root, 'test'):
        det = read_oracle(root / 'oracle_detections' / 'testing' / f'{v.name}.txt')
        assert set(det[:, 6].astype(int)) <= set(COCO.values()) and (det[:, 5] == 1.0).all()
        assert len(det) == objs[objs.video == v.name].frames_in_view.sum()
        rows = {tuple(r) for r in det[:, :5].astype(int).tolist()}
        assert all((t, x0, y0, x1, y1) in rows for _, t, x0, y0, x1, y1 in v.regions.tolist())
    assert 'oracle' in json.loads((root / 'street.json').read_text())['oracle_detections']


def test_normal_classes_keep_to_their_regions(smoke):
    "Class-specific regions: in training, box bottoms of people lie on walkways, of vehicles on the road."
    cfg, root = smoke
    regions = region_map(cfg.camera)
    for v in read_dataset('street', root, 'train'):
        det = read_oracle(root / 'oracle_detections' / 'training' / f'{v.name}.txt').astype(int)
        full = (det[:, 4] < cfg.height - 1) & (det[:, 1] > 0) & (det[:, 3] < cfg.width - 1)  # feet in the picture
        x = ((det[:, 1] + det[:, 3]) // 2)[full]
        under = regions[det[full, 4], x]
        cls = det[full, 6]
        assert set(under[cls == COCO['person']]) <= {Region.sidewalk, Region.path, Region.crossing}
        assert set(under[cls != COCO['person']]) <= {Region.road, Region.crossing}


def test_make_street_reuses_and_refuses(smoke, tmp_path):
    cfg, root = smoke
    stamp = (root / 'street.json').stat().st_mtime_ns
    assert make_street(cfg, root) == root and (root / 'street.json').stat().st_mtime_ns == stamp
    (tmp_path / 'mine').mkdir(); (tmp_path / 'mine' / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not a street dataset'):
        make_street(cfg, tmp_path / 'mine')
    assert (tmp_path / 'mine' / 'notes.txt').read_text() == 'keep me'
    with pytest.raises(ValueError, match='n_test must be'):
        StreetConfig.for_scale('smoke', n_test=-1)


def test_ensure_street_generates_once_into_the_cache(monkeypatch, tmp_path):
    from mmp_repro.street import ensure_street
    monkeypatch.setenv('MMP_CACHE', str(tmp_path / 'cache'))
    root = ensure_street('smoke', seed=1)
    assert root == tmp_path / 'cache' / 'street' / 'smoke-seed1' and (root / 'street.json').exists()
    stamp = (root / 'street.json').stat().st_mtime_ns
    assert ensure_street('smoke', seed=1) == root and (root / 'street.json').stat().st_mtime_ns == stamp
    assert not (tmp_path / 'cache' / 'street' / 'smoke-seed1.partial').exists()
