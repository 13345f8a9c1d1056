"""Extraction across modules: vtest.avi lookup, YOLOv3-tiny objects of a real video and their cache, oracle recall on the street."""
import numpy as np
import pytest

from mmp_repro.detection import PrecomputedDetector, find_yolov3_tiny, make_detector
from mmp_repro.extraction_report import head_video, oracle_recall
from mmp_repro.video import find_vtest
from mmp_repro.objects import ObjectConfig, extract_objects
from mmp_repro.street import ensure_street
from mmp_repro.video import Video, VideoFileFrames, read_dataset


def test_find_vtest_prefers_mmp_data(tmp_path, monkeypatch):
    (tmp_path / 'video').mkdir()
    (tmp_path / 'video' / 'vtest.avi').write_bytes(b'')
    monkeypatch.setenv('MMP_DATA', str(tmp_path))
    assert find_vtest() == tmp_path / 'video' / 'vtest.avi'
    assert find_vtest(tmp_path / 'video') == tmp_path / 'video' / 'vtest.avi'
    with pytest.raises(FileNotFoundError, match='opencv-doc'):
        find_vtest(tmp_path / 'elsewhere' / 'vtest.avi')


@pytest.fixture
def vtest_and_yolo(shared_dir):
    try: return find_vtest(shared_dir / 'data' / 'video'), find_yolov3_tiny(shared_dir / 'models' / 'yolov3-tiny')
    except FileNotFoundError as e: pytest.skip(str(e))


def test_vtest_objects_are_mostly_people_and_cached(vtest_and_yolo, tmp_path):
    path, weights = vtest_and_yolo
    src = VideoFileFrames(path)
    video = head_video(Video('vtest', src, fps=src.fps), 6)
    det = make_detector('yolov3-tiny', preset='vtest', rgb=True, weights_dir=weights)
    cfg = ObjectConfig(crop_size=32)
    (s,) = extract_objects([video], det, cfg, tmp_path, progress=False)
    ids = np.asarray(s.classes).argmax(1)
    assert len(s) >= 10 and (ids == 0).mean() > 0.5  # a pedestrian scene, several people per frame
    assert set(np.asarray(s.frame_idx)) <= set(range(5))  # window 2: the last frame only serves as a future
    assert s.present.shape[1:] == (3, 32, 32) and s.flow.shape[1:] == (1, 32, 32)
    assert 0 <= float(np.asarray(s.flow).min()) and float(np.asarray(s.flow).max()) <= 1
    import mmp_repro.objects as objects_module
    def no_extraction(*args, **kwargs): raise AssertionError('extracted again instead of reading the cache')
    real, objects_module.extract_video = objects_module.extract_video, no_extraction
    try: (again,) = extract_objects([video], det, cfg, tmp_path, progress=False)  # from the cache
    finally: objects_module.extract_video = real
    np.testing.assert_array_equal(np.asarray(again.present), np.asarray(s.present))


def test_oracle_recall_of_the_oracle_is_one():
    root = ensure_street('smoke', 0)
    videos = read_dataset('street', root, 'test')[:1]
    det = lambda v: PrecomputedDetector(root / 'oracle_detections' / 'testing' / f'{v.name}.txt')
    samples = extract_objects(videos, det, ObjectConfig(crop_size=16), None, progress=False)
    table = oracle_recall(samples, samples).set_index('class')
    assert table.loc['all', 'oracle_boxes'] == len(samples[0]) > 0
    assert table.recall.eq(1).all() and table.class_agrees.eq(1).all()
