"""The plaza benchmark (07a_plaza): real vtest.avi pedestrians in the street's layout, read back by the readers; same seed, same files."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mmp_repro.plaza import ANOMALY_TYPES, PLAZA_FPS, PlazaConfig, ensure_plaza, make_plaza
from mmp_repro.street import read_oracle
from mmp_repro.tracks import attach_tracks
from mmp_repro.video import read_shanghaitech

OBJECT_COLUMNS = ['split', 'video', 'track_id', 'kind', 'coco_class', 'anomaly', 'subtype', 'first_frame', 'last_frame',
                  'frames_in_view', 'anomalous_frames', 'lane']


@pytest.fixture(scope='module')
def inputs():
    "vtest.avi and YOLOv3-tiny from the offline copies beside the checkout; skipped when either is absent."
    from mmp_repro.core import shared_copies
    from mmp_repro.detection import find_yolov3_tiny
    from mmp_repro.video import find_vtest
    try: return find_vtest(next((d / 'video' for d in shared_copies('data') if (d / 'video' / 'vtest.avi').is_file()), None)), find_yolov3_tiny()
    except FileNotFoundError as e: pytest.skip(f'plaza needs vtest.avi and YOLOv3-tiny: {e}')


@pytest.fixture(scope='module')
def smoke(inputs, tmp_path_factory):
    return make_plaza(PlazaConfig.for_scale('smoke'), tmp_path_factory.mktemp('plaza') / 'smoke', video=inputs[0])


def _digest(root, names):
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


def test_config_is_checked():
    with pytest.raises(ValueError, match='too small'): PlazaConfig.for_scale('smoke', height=20)
    with pytest.raises(ValueError, match='run_factor'): PlazaConfig.for_scale('smoke', run_factor=1.0)
    assert PlazaConfig.for_scale('full').height > PlazaConfig.for_scale('quick').height > PlazaConfig.for_scale('smoke').height


def test_layout_reads_back(smoke):
    cfg = PlazaConfig.for_scale('smoke')
    train = read_shanghaitech(smoke, 'train', name='plaza', fps=PLAZA_FPS)
    test = attach_tracks(read_shanghaitech(smoke, 'test', name='plaza', fps=PLAZA_FPS), smoke / 'testing' / 'test_tracks')
    assert [v.name for v in train] == ['01_001', '01_002'] and [v.name for v in test] == ['01_0001', '01_0002']
    assert train[0].num_frames == cfg.train_frames and test[0].size == (cfg.height, cfg.width)
    objs = pd.read_csv(smoke / 'objects.csv', dtype={'video': str})
    assert list(objs.columns) == OBJECT_COLUMNS and set(objs.kind) == {'person'} and set(objs.coco_class) == {0}
    assert set(objs.anomaly) - {'normal'} <= set(ANOMALY_TYPES) and (objs[objs.split == 'train'].anomaly == 'normal').all()
    for v in test:
        masks = np.load(smoke / 'testing' / 'test_pixel_mask' / f'{v.name}.npy')
        assert masks.dtype == np.uint8 and masks.shape == (v.num_frames, cfg.height, cfg.width)
        assert (masks.reshape(len(masks), -1).max(1) > 0).tolist() == (v.labels > 0).tolist()  # a labelled frame has anomalous pixels
        bad = objs[(objs.video == v.name) & (objs.anomaly != 'normal')]
        assert len(v.regions) == bad.anomalous_frames.sum() > 0
        oracle = read_oracle(smoke / 'oracle_detections' / 'testing' / f'{v.name}.txt')
        assert len(oracle) == objs[objs.video == v.name].frames_in_view.sum() and set(oracle[:, 6]) == {0.0}
        # every anomalous region is also an oracle box of the same frame
        boxes = {(int(r[0]), *map(int, r[1:5])) for r in oracle}
        assert all((int(r[1]), *map(int, r[2:])) in boxes for r in v.regions)
    meta = json.loads((smoke / 'plaza.json').read_text())
    assert len(meta['source']['sha256']) == 64 and meta['code'] and meta['config']['scale'] == 'smoke'


def test_same_seed_same_files_and_reuse(inputs, smoke, tmp_path):
    names = ['objects.csv', 'testing/test_tracks/01_0001.txt', 'testing/test_pixel_mask/01_0002.npy',
             'testing/frames/01_0001/015.jpg', 'oracle_detections/training/01_002.txt']
    again = make_plaza(PlazaConfig.for_scale('smoke'), tmp_path / 'again', video=inputs[0])
    assert _digest(again, names) == _digest(smoke, names)
    other = make_plaza(PlazaConfig.for_scale('smoke', seed=1), tmp_path / 'other', video=inputs[0])
    assert _digest(other, names) != _digest(smoke, names)
    stamp = (again / 'plaza.json').stat().st_mtime_ns
    assert make_plaza(PlazaConfig.for_scale('smoke'), again, video=inputs[0]) == again
    assert (again / 'plaza.json').stat().st_mtime_ns == stamp  # same config, code and video: not written again
    assert not (tmp_path / 'again.partial').exists()
    # a bank cut by other detector settings or code has another name: the dataset made from the old one is remade
    meta = json.loads((again / 'plaza.json').read_text()); bank = meta['source']['sprite_bank']
    (again / 'plaza.json').write_text(json.dumps({**meta, 'source': {**meta['source'], 'sprite_bank': 'older-bank.npz'}}))
    make_plaza(PlazaConfig.for_scale('smoke'), again, video=inputs[0])
    assert json.loads((again / 'plaza.json').read_text())['source']['sprite_bank'] == bank


def test_refuses_a_foreign_folder(inputs, tmp_path):
    (tmp_path / 'x').mkdir(); (tmp_path / 'x' / 'mine.txt').write_text('keep')
    with pytest.raises(FileExistsError, match='not a plaza dataset'):
        make_plaza(PlazaConfig.for_scale('smoke'), tmp_path / 'x', video=inputs[0])


def test_ensure_plaza_uses_the_cache_folder(inputs, tmp_path, monkeypatch):
    import shutil
    from mmp_repro.core import cache_dir
    from mmp_repro.plaza import load_sprites
    load_sprites(inputs[0], PlazaConfig.for_scale('smoke').source_frames)  # cut once in the real cache, then shared
    (tmp_path / 'plaza' / 'sprites').mkdir(parents=True)
    for f in (cache_dir() / 'plaza' / 'sprites').glob('*-200-*.npz'):  # the smoke preset's bank (its first 200 frames)
        if '.partial' not in f.name: shutil.copy(f, tmp_path / 'plaza' / 'sprites' / f.name)
    monkeypatch.setenv('MMP_CACHE', str(tmp_path))
    root = ensure_plaza('smoke', seed=0, video=inputs[0])
    assert root == cache_dir() / 'plaza' / 'smoke-seed0' and (root / 'plaza.json').is_file()


def test_missing_video_says_where_to_get_it(tmp_path):
    from mmp_repro.core import MissingInputError
    with pytest.raises(MissingInputError, match='vtest'):
        make_plaza(PlazaConfig.for_scale('smoke'), tmp_path / 'p', video=tmp_path / 'nowhere' / 'vtest.avi')
