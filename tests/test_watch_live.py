"""`mmp_repro watch` on live sources: a real video served over a loopback socket and through a pipe by ffmpeg, a file
still being written, frames dropped when scoring falls behind, Ctrl-C, and the alarm threshold of the run."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import ROOT, console_script
from mmp_repro.detection import COCO_CLASSES

FFMPEG = shutil.which('ffmpeg')
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason='ffmpeg is not on PATH: it serves and pipes the test streams')
EVENT_FIELDS = {'frame', 'time', 'box', 'class', 'score', 'z', 'aspect', 'aspect_key', 'aspect_z'}
FRAME_FIELDS = {'frame', 'time', 'score', 'objects', 'alarms'}

# the handler through a parser built here, as `mmp_repro.cli.main` runs it, until `watch` is registered in the CLI
_SCRIPT = '''
import argparse, logging, sys
from mmp_repro.cli import error_message
from mmp_repro.watch import add_command
p = argparse.ArgumentParser(prog='mmp_repro'); add_command(p.add_subparsers(dest='command', required=True))
args = p.parse_args(sys.argv[1:])
logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s', stream=sys.stderr)
try: sys.exit(args.func(args))
except (OSError, ValueError, KeyError, RuntimeError) as e:
    print(error_message(args.command, e), file=sys.stderr); sys.exit(1)
'''


def _registered() -> bool:
    "Whether the `mmp_repro` command already runs this module's `watch`."
    import contextlib, io
    from mmp_repro.cli import build_parser
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(['watch', 'x', '--run-dir', 'r', '--events', 'e'])
    except SystemExit: return False
    return getattr(args.func, '__module__', '') == 'mmp_repro.watch'


def watch_cmd(*args) -> list[str]:
    "The command line of `mmp_repro watch ARGS`."
    if _registered(): return [console_script('mmp_repro'), 'watch', *map(str, args)]
    return [sys.executable, '-c', _SCRIPT, 'watch', *map(str, args)]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    # the smoke network trained on a folder of toy videos: what the weights learnt does not matter to these checks
    from mmp_repro.pipeline import PipelineConfig, claim_run, extract_stage, score_stage, train_stage
    from mmp_repro.video import write_folder_fixture
    tmp = tmp_path_factory.mktemp('live')
    write_folder_fixture(tmp / 'mine' / 'train', n_frames=30, size=(128, 192), seed=0)
    write_folder_fixture(tmp / 'mine' / 'test', n_frames=12, size=(128, 192), seed=5)
    cfg = PipelineConfig.for_scale('smoke', dataset='folder', root=str(tmp / 'mine'), detector='bgsub')
    train, _, _ = extract_stage(cfg, tmp / 'cache', progress=False)
    run = tmp / 'run'
    claim_run(cfg, run, train, [])
    model, loc = train_stage(cfg, train, run, 'cpu', progress=False)
    score_stage(cfg, model, loc, train, [], [], run, 'cpu')  # writes aspect_stats.json and alarm.json
    return run, cfg, train, model, loc


@pytest.fixture(scope='module')
def vtest_clip(tmp_path_factory):
    "The first 40 frames of vtest.avi at 360x240 (Motion-JPEG, 10 frames/s), when the video and YOLOv3-tiny are at hand."
    from mmp_repro.detection import find_yolov3_tiny
    from mmp_repro.video import find_vtest
    from mmp_repro.video import VideoFileFrames, write_video
    try: src, _ = VideoFileFrames(find_vtest()), find_yolov3_tiny()
    except FileNotFoundError as e: pytest.skip(f'vtest.avi or YOLOv3-tiny missing: {str(e).splitlines()[0]}')
    path = tmp_path_factory.mktemp('clip') / 'vtest-360x240.avi'
    return write_video(path, (cv2.resize(src.read(i), (360, 240), interpolation=cv2.INTER_AREA) for i in range(40)), 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    "Whether a socket listens on `port` (Linux: /proc/net/tcp), without connecting: ffmpeg -listen 1 serves one client."
    try: lines = open('/proc/net/tcp').read().splitlines()[1:]
    except OSError: return False
    return any(l.split()[1].endswith(f':{port:04X}') and l.split()[3] == '0A' for l in lines)


@pytest.fixture
def serve(tmp_path):
    "Start `ffmpeg -re` serving a video as MPEG-TS over HTTP on a loopback port; returns the URL."
    procs = []
    def start(video, loop: bool = False) -> str:
        port = _free_port()
        cmd = [FFMPEG, '-nostdin', '-v', 'error', '-re', *(['-stream_loop', '-1'] if loop else []), '-i', str(video),
               '-c:v', 'mpeg2video', '-q:v', '4', '-f', 'mpegts', '-listen', '1', f'http://127.0.0.1:{port}/']
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not _listening(port) and time.monotonic() < deadline: time.sleep(0.05)
        if not os.path.exists('/proc/net/tcp'): time.sleep(1.0)
        return f'http://127.0.0.1:{port}/'
    yield start
    for p in procs:
        p.kill(); p.wait()


def _frames_of(path) -> tuple[int, tuple[int, int]]:
    "Frames decoded back with OpenCV, and their (width, height)."
    cap, n, size = cv2.VideoCapture(str(path)), 0, None
    while True:
        ok, img = cap.read()
        if not ok: break
        n, size = n + 1, (img.shape[1], img.shape[0])
    cap.release()
    return n, size


def _ffprobe(path) -> dict | None:
    if shutil.which('ffprobe') is None: return None
    r = subprocess.run(['ffprobe', '-v', 'error', '-count_frames', '-select_streams', 'v:0', '-of', 'json', '-show_entries',
                        'stream=codec_name,width,height,nb_read_frames', str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)['streams'][0]


def _check_video(path, n_frames: int, width: int, height: int) -> None:
    "The annotated video holds `n_frames` frames of the source's width and its height plus the strip, for OpenCV and ffprobe."
    from mmp_repro.render import strip_height
    assert path.is_file()
    assert _frames_of(path) == (n_frames, (width, height + strip_height(height)))
    probe = _ffprobe(path)
    if probe is not None:
        assert (probe['width'], probe['height'], int(probe['nb_read_frames'])) == (width, height + strip_height(height), n_frames)


def _check_events(path) -> list[dict]:
    events = [json.loads(l) for l in path.read_text().splitlines()]  # every line is whole
    for e in events:
        assert set(e) == EVENT_FIELDS, e
        assert len(e['box']) == 4 and e['box'][0] <= e['box'][2] and e['box'][1] <= e['box'][3]
        assert e['aspect_key'] in e['z'] and e['z'][e['aspect_key']] == e['aspect_z'] and isinstance(e['aspect'], str)
        assert e['class'] in COCO_CLASSES, e['class']  # the detector's class, named
    return events


def test_alarm_threshold_is_the_995th_percentile_of_the_training_scores(tiny_run):
    # the training objects scored again here, z-scored with aspect_stats.json and weighted by hand (eqs. 9-10)
    from mmp_repro.objects import ObjectDataset
    from mmp_repro.pipeline import load_alarm, mask_for
    from mmp_repro.scoring import threshold_at, location_losses, model_losses
    run, cfg, train, model, loc = tiny_run
    ds = ObjectDataset(train)
    losses = {**model_losses(model, ds, mask_for(cfg), tuple(cfg.aspects), cfg.train.distances, seed=cfg.seed, device='cpu'),
              **location_losses(loc, ds)}
    stats = json.loads((run / 'aspect_stats.json').read_text())
    w = cfg.weights
    s = np.zeros(len(ds))
    for a, v in losses.items():
        z = (np.asarray(v, np.float64) - stats[a]['mu']) / stats[a]['sigma']
        s += w.w.get(a, 0.0) * z * (1.0 if a in 'FOC' else w.gamma)
    alarm = load_alarm(run)
    assert len(s) >= 5 and alarm['n_train_objects'] == len(s)
    np.testing.assert_allclose(alarm['train_scores'], np.sort(s), rtol=1e-9, atol=1e-9)  # kept for other rates
    assert alarm['false_alarm_rate'] == 0.005
    np.testing.assert_allclose(alarm['threshold'], np.percentile(s, 99.5), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(threshold_at(alarm, 0.1), np.percentile(s, 90), rtol=1e-9, atol=1e-9)
    assert (s > alarm['threshold']).mean() <= 0.005 + 1 / len(s)


def test_a_run_without_alarm_json_says_to_score_it(tiny_run, tmp_path):
    from mmp_repro.pipeline import load_alarm
    with pytest.raises(FileNotFoundError, match='mmp_repro score --run-dir'):
        load_alarm(tmp_path)


@needs_ffmpeg
def test_stream_over_http_with_video_and_events(tiny_run, vtest_clip, serve, tmp_path):
    run = tiny_run[0]
    url = serve(vtest_clip)
    out, ev = tmp_path / 'annotated.mp4', tmp_path / 'events.jsonl'
    r = subprocess.run(watch_cmd(url, '--run-dir', run, '--detector', 'yolov3-tiny', '--output', out, '--events', ev),
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(l) for l in r.stdout.splitlines()]  # stdout: one JSON line per scored frame, nothing else
    assert len(lines) >= 3 and all(set(l) == FRAME_FIELDS for l in lines)  # frames buffered while the stream opens may drop
    frames = [l['frame'] for l in lines]
    assert frames == sorted(set(frames)) and frames[-1] <= 38
    assert all(l['time'] >= 0 for l in lines) and any(l['objects'] > 0 for l in lines)
    assert 'end of the source' in r.stderr and 'frames scored' in r.stderr
    events = _check_events(ev)
    assert len(events) == sum(l['alarms'] for l in lines)
    _check_video(out, len(lines), 360, 240)


@needs_ffmpeg
def test_pipe_on_stdin_scores_every_frame_and_quiet_prints_only_alarms(tiny_run, vtest_clip, tmp_path):
    run = tiny_run[0]
    ev = tmp_path / 'events.jsonl'
    feed = subprocess.Popen([FFMPEG, '-nostdin', '-v', 'error', '-i', str(vtest_clip), '-c:v', 'mpeg2video', '-q:v', '4',
                             '-f', 'mpegts', '-'], stdout=subprocess.PIPE)
    try:
        r = subprocess.run(watch_cmd('-', '--run-dir', run, '--detector', 'yolov3-tiny', '--realtime', 'off', '--quiet',
                                     '--events', ev, '--output', tmp_path / 'a.mp4'),
                           stdin=feed.stdout, capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        feed.stdout.close(); feed.wait(10)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ''  # --quiet: nothing on stderr but errors
    printed = [json.loads(l) for l in r.stdout.splitlines()]
    events = _check_events(ev)
    assert printed == events and len(events) > 0  # the alarms, the same lines as the events file
    assert {e['frame'] for e in events} <= set(range(39))
    assert _frames_of(tmp_path / 'a.mp4')[0] == 39  # every frame that has a next one was scored (no drops without real time)


@needs_ffmpeg
def test_a_pipe_without_a_video_is_a_clear_error(tiny_run):
    r = subprocess.run(watch_cmd('-', '--run-dir', tiny_run[0], '--detector', 'bgsub', '--timeout', '2'), input=b'not a video',
                       capture_output=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1 and b'mmp_repro watch: error: stdin: no video stream' in r.stderr, r.stderr[-2000:]
    assert r.stdout == b''


def test_scoring_slower_than_the_source_drops_the_oldest_frames(tiny_run, vtest_clip, tmp_path):
    # the clip played in real time at 200 frames/s: scoring (a few tens of frames/s here) cannot keep up
    from mmp_repro.video import VideoFileFrames, write_video
    from mmp_repro.watch import watch
    src = VideoFileFrames(vtest_clip)
    fast = write_video(tmp_path / 'fast.avi', (src.read(i) for i in range(len(src))), fps=200)
    counts = {}
    got = [f.index for f in watch(fast, tiny_run[0], 'bgsub', 'cpu', realtime=True, counts=counts)]
    assert counts['realtime'] and counts['dropped'] > 0, counts
    assert got == sorted(set(got)) and len(got) == counts['scored'] < 39
    assert counts['read'] == 40 and counts['scored'] + counts['dropped'] <= 39
    # without real time, every frame of the same file is scored
    counts = {}
    assert [f.index for f in watch(fast, tiny_run[0], 'bgsub', 'cpu', counts=counts)] == list(range(39))
    assert counts['dropped'] == 0


@needs_ffmpeg
def test_ctrl_c_stops_cleanly_with_a_valid_video(tiny_run, vtest_clip, serve, tmp_path):
    run = tiny_run[0]
    url = serve(vtest_clip, loop=True)  # a stream without an end
    out, ev = tmp_path / 'annotated.mp4', tmp_path / 'events.jsonl'
    p = subprocess.Popen(watch_cmd(url, '--run-dir', run, '--detector', 'yolov3-tiny', '--output', out, '--events', ev),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines, deadline = [], time.monotonic() + 90
    try:
        while len(lines) < 5 and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line: break
            lines.append(json.loads(line))
        assert len(lines) == 5, p.stderr.read()[-3000:] if p.poll() is not None else 'no frames scored in time'
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    lines += [json.loads(l) for l in rest.splitlines()]
    assert p.returncode == 130, err[-3000:]
    assert 'Traceback' not in err and 'stopped by Ctrl-C' in err and f'{len(lines)} frames scored' in err
    assert not any(t.name.endswith('.partial.mp4') for t in tmp_path.iterdir())
    _check_video(out, len(lines), 360, 240)
    assert len(_check_events(ev)) == sum(l['alarms'] for l in lines)


@needs_ffmpeg
def test_follow_reads_a_file_while_it_is_written(tiny_run, vtest_clip, tmp_path):
    run, growing = tiny_run[0], tmp_path / 'growing.ts'
    writer = subprocess.Popen([FFMPEG, '-nostdin', '-v', 'error', '-re', '-i', str(vtest_clip), '-c:v', 'mpeg2video',
                               '-q:v', '4', '-f', 'mpegts', '-flush_packets', '1', str(growing)])
    try:
        deadline = time.monotonic() + 10
        while not (growing.exists() and growing.stat().st_size) and time.monotonic() < deadline: time.sleep(0.05)
        r = subprocess.run(watch_cmd(growing, '--run-dir', run, '--detector', 'bgsub', '--follow', '--timeout', '2',
                                     '--realtime', 'off'), capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert writer.wait(30) == 0
    finally:
        if writer.poll() is None: writer.kill(); writer.wait()
    assert r.returncode == 0, r.stderr[-3000:]
    # the file grew over 4 s while watch read it; every frame written was scored, and it ended 2 s after the last
    assert [json.loads(l)['frame'] for l in r.stdout.splitlines()] == list(range(39))
    assert '39 frames scored, 0 dropped' in r.stderr
