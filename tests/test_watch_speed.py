"""Online scoring (`watch.watch`) runs whole frames in worker threads: the same results as without threads, the
library thread settings restored, no thread left behind, and the time of each stage reported."""
import os
import threading

import cv2
import numpy as np
import pytest
import torch



@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    # the smoke network trained on a folder of toy videos: speed and equality do not depend on what it learnt
    from mmp_repro.pipeline import PipelineConfig, claim_run, extract_stage, score_stage, train_stage
    from mmp_repro.video import write_folder_fixture
    tmp = tmp_path_factory.mktemp('watch')
    for split, seed in (('train', 0), ('test', 5)):
        write_folder_fixture(tmp / 'mine' / split, n_frames=12, size=(128, 192), seed=seed)
    cfg = PipelineConfig.for_scale('smoke', dataset='folder', root=str(tmp / 'mine'), detector='bgsub')
    train, _, _ = extract_stage(cfg, tmp / 'cache', progress=False)
    run = tmp / 'run'
    claim_run(cfg, run, train, [])
    model, loc = train_stage(cfg, train, run, 'cpu', progress=False)
    score_stage(cfg, model, loc, train, [], [], run, 'cpu')  # writes aspect_stats.json and alarm.json
    return tmp / 'mine' / 'test', run


@pytest.fixture(scope='module')
def vtest_clip(tmp_path_factory):
    "The first 60 frames of vtest.avi at 360x240 (Motion-JPEG), when the video and YOLOv3-tiny are at hand."
    from mmp_repro.detection import find_yolov3_tiny
    from mmp_repro.video import find_vtest
    from mmp_repro.video import VideoFileFrames, write_video
    try: src, _ = VideoFileFrames(find_vtest()), find_yolov3_tiny()
    except FileNotFoundError as e: pytest.skip(f'vtest.avi or YOLOv3-tiny missing: {str(e).splitlines()[0]}')
    path = tmp_path_factory.mktemp('clip') / 'vtest-360x240.avi'
    return write_video(path, (cv2.resize(src.read(i), (360, 240), interpolation=cv2.INTER_AREA) for i in range(60)), 10)


def _frames(gen):
    return [(f.index, f.score, f.objects) for f in gen]


def _same(a, b):
    "The same frames, objects and scores, to the last bit."
    assert [t for t, _, _ in a] == [t for t, _, _ in b]
    np.testing.assert_array_equal([s for _, s, _ in a], [s for _, s, _ in b])  # NaN (no objects) equals NaN here
    for (_, _, x), (_, _, y) in zip(a, b):
        assert x.columns.tolist() == y.columns.tolist()
        assert x.class_name.tolist() == y.class_name.tolist()
        np.testing.assert_array_equal(x.drop(columns='class_name').to_numpy(np.float64), y.drop(columns='class_name').to_numpy(np.float64))


def _plain(video, run, detector, workers):
    "`watch` without threads, with the torch and OpenCV threads per call of `workers` workers (products round by them)."
    from mmp_repro.core import cpu_cores
    from mmp_repro.watch import library_threads, watch
    with library_threads(max(1, cpu_cores() // workers)):
        return _frames(watch(video, run, detector, 'cpu', workers=0))


def _watch_threads():
    return [t for t in threading.enumerate() if t.name.startswith('watch')]


def test_any_number_of_workers_gives_the_frames_of_the_loop_without_threads(tiny_run):
    from mmp_repro.watch import watch
    video, run = tiny_run
    for n in (1, 2, 3):
        plain = _plain(video / 'cam3', run, 'bgsub', n)
        assert len(plain) == 11 and any(len(t) for _, _, t in plain)
        _same(plain, _frames(watch(video / 'cam3', run, 'bgsub', 'cpu', workers=n)))


def test_thread_settings_restored_and_workers_stopped_when_the_caller_stops_early(tiny_run):
    from mmp_repro.core import cpu_cores
    from mmp_repro.watch import watch
    video, run = tiny_run
    before = cv2.getNumThreads(), torch.get_num_threads()
    gen = watch(video / 'cam3', run, 'bgsub', 'cpu', workers=2)
    next(gen)
    assert torch.get_num_threads() == max(1, cpu_cores() // 2) and cv2.getNumThreads() == max(1, cpu_cores() // 2)
    gen.close()
    assert (cv2.getNumThreads(), torch.get_num_threads()) == before
    assert not _watch_threads()


def test_an_error_in_a_worker_reaches_the_caller(tiny_run, monkeypatch):
    from mmp_repro import watch as online
    video, run = tiny_run
    def boom(*args, **kwargs): raise RuntimeError('scoring failed')
    monkeypatch.setattr(online, '_frame_losses', boom)  # called in a worker for each frame with objects
    with pytest.raises(RuntimeError, match='scoring failed'):
        _frames(online.watch(video / 'cam3', run, 'bgsub', 'cpu', workers=2))
    assert not _watch_threads()


def test_timings_give_each_stage(tiny_run):
    from mmp_repro.watch import WATCH_STAGES, watch
    video, run = tiny_run
    timings = {}
    n = len(_frames(watch(video / 'cam3', run, 'bgsub', 'cpu', timings=timings, workers=2)))
    assert set(timings) == {*WATCH_STAGES, 'frames', 'wall'} and timings['frames'] == n
    assert timings['wall'] > 0 and all(timings[k] >= 0 for k in WATCH_STAGES) and timings['score'] > 0


def test_yolo_workers_score_two_frames_at_once(tiny_run, vtest_clip):
    # YOLOv3-tiny: one copy of the net per worker. The same frames as the plain loop, and the stages of two frames
    # overlap: their seconds (summed over the workers) add up to more than the wall time
    from mmp_repro.watch import WATCH_STAGES, watch
    _, run = tiny_run
    plain, timings = _plain(vtest_clip, run, 'yolov3-tiny', 2), {}
    _same(plain, _frames(watch(vtest_clip, run, 'yolov3-tiny', 'cpu', timings=timings, workers=2)))
    assert sum(timings[k] for k in WATCH_STAGES) > 1.3 * timings['wall'], timings


@pytest.mark.skipif(not os.environ.get('MMP_WATCH_FPS'), reason='set MMP_WATCH_FPS=20 to require that many frames/s (a quiet machine)')
def test_watch_reaches_the_frame_rate(tiny_run, vtest_clip):
    from mmp_repro.watch import watch
    _, run = tiny_run
    timings = {}
    _frames(watch(vtest_clip, run, 'yolov3-tiny', 'cpu', timings=timings))
    fps = timings['frames'] / timings['wall']
    assert fps >= float(os.environ['MMP_WATCH_FPS']), f'{fps:.1f} frames/s: {timings}'
