"""The annotated video: frames drawn, written as a playable .mp4 (also when interrupted), and a scored street run rendered."""
import argparse
import json
import logging
import shutil
import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest

from mmp_repro.render import (GREEN, RED, WHITE, AnnotatedVideoWriter, ScoredVideo, add_command, alarm_label,
                              annotate_frame, dominant_aspect, load_scored_video, probe_video, render_run,
                              strip_height)

needs_ffmpeg = pytest.mark.skipif(not (shutil.which('ffmpeg') and shutil.which('ffprobe')), reason='ffmpeg/ffprobe not on PATH')


def objects_table() -> pd.DataFrame:
    "An alarm (score 8 > threshold 5, motion its largest z) and a normal object (score 0)."
    return pd.DataFrame({'x_min': [40.0, 200.0], 'y_min': [60.0, 100.0], 'x_max': [90.0, 260.0], 'y_max': [150.0, 180.0],
                         'score': [8.0, 0.0], 'z_F': [1.0, 0.0], 'z_O': [6.3, 0.1], 'z_C': [0.7, -0.1]})


def decode(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok: return frames
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))


def test_annotate_frame_colours_labels_and_size():
    frame = np.full((240, 360, 3), 90, np.uint8)
    obj = objects_table()
    img = annotate_frame(frame, obj, threshold=5.0, history=[1.0, np.nan, 8.0], truth=np.array([[120, 20, 170, 70]]))
    assert img.dtype == np.uint8 and img.shape == (240 + strip_height(240), 360, 3)
    # the left edge of each box, halfway down: the alarm's is red, the normal object's green
    assert tuple(img[105, 40]) == RED and tuple(img[140, 200]) == GREEN
    assert tuple(img[180, 230]) == GREEN, 'the bottom edge too'
    # the alarm's label: a red band with white text just above its box
    band = img[45:59, 40:120].reshape(-1, 3)
    assert (band == RED).all(1).sum() > 100 and (band.min(1) > 200).sum() > 20  # anti-aliased white text
    assert not (img[:240, 190:300] == RED).all(2).any(), 'no label or red near the normal object'
    # the ground truth: dashed white, 2 px outside the true box
    top = img[18, 118:173]
    assert 0.3 < (top == WHITE).all(1).mean() < 0.8, 'dashed: part of the edge is white'
    assert not (img[:240, 300:] != 90).any(), 'nothing drawn where there is nothing'
    # the strip's height depends on the frame's height only
    for hist in ([], [2.0] * 400, [np.nan]):
        assert annotate_frame(frame, obj.iloc[:0], 5.0, hist).shape == img.shape
    assert dominant_aspect(obj.iloc[0]) == ('O', 6.3)
    assert alarm_label(obj.iloc[0]) == 'motion +6.3'
    assert alarm_label(obj.iloc[0].to_dict() | {'class_name': 'person'}) == 'person: motion +6.3'
    with pytest.raises(ValueError, match='RGB uint8'):
        annotate_frame(frame[..., 0], obj, 5.0)


@needs_ffmpeg
def test_writer_round_trip_is_h264_and_decodes(tmp_path):
    frames = [np.full((120, 161, 3), 30 + 5 * i, np.uint8) for i in range(15)]  # an odd width: padded for yuv420p
    with AnnotatedVideoWriter(tmp_path / 'a.mp4', 10, threshold=5.0) as w:
        for i, f in enumerate(frames): w.write(f, objects_table(), float(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.mp4']
    back = decode(tmp_path / 'a.mp4')
    assert len(back) == 15 and back[0].shape[:2] == (120 + strip_height(120), 162)  # a black column added
    info = probe_video(tmp_path / 'a.mp4')
    assert info == {'codec': 'h264', 'pix_fmt': 'yuv420p', 'width': 162, 'height': 160, 'frames': 15}
    # the picture survives the encoding: a decoded frame is close to the frame drawn
    drawn = annotate_frame(frames[7], objects_table(), 5.0, np.arange(8.0))
    assert np.abs(back[7][:, :161].astype(int) - drawn).mean() < 4
    with open(tmp_path / 'a.mp4', 'rb') as f: head = f.read(64 * 1024)
    assert head.find(b'moov') != -1 and head.find(b'moov') < head.find(b'mdat'), 'faststart: the index comes first'


def test_writer_without_ffmpeg_keeps_mp4v_and_says_so(tmp_path, monkeypatch, caplog):
    real_which = shutil.which
    monkeypatch.setattr(shutil, 'which', lambda name, *a, **k: None if name == 'ffmpeg' else real_which(name, *a, **k))
    with caplog.at_level(logging.WARNING, logger='mmp_repro.render'):
        with AnnotatedVideoWriter(tmp_path / 'b.mp4', 10, threshold=5.0) as w:
            for i in range(4): w.write(np.zeros((64, 80, 3), np.uint8), objects_table().iloc[:0], 1.0)
    assert 'ffmpeg is not on PATH' in caplog.text and 'mp4v' in caplog.text
    assert len(decode(tmp_path / 'b.mp4')) == 4
    if real_which('ffprobe'): assert probe_video(tmp_path / 'b.mp4')['codec'] == 'mpeg4'


@pytest.mark.parametrize('error', [KeyboardInterrupt, RuntimeError])
def test_interrupted_writer_leaves_a_playable_video_or_none(tmp_path, error):
    frame = np.full((96, 128, 3), 60, np.uint8)
    with pytest.raises(error):
        with AnnotatedVideoWriter(tmp_path / 'cut.mp4', 10, threshold=5.0) as w:
            for _ in range(6): w.write(frame, objects_table().iloc[:0], 0.5)
            raise error()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cut.mp4'], 'kept under its name, no temporary file'
    assert len(decode(tmp_path / 'cut.mp4')) == 6
    if shutil.which('ffprobe'): assert probe_video(tmp_path / 'cut.mp4')['frames'] == 6
    with pytest.raises(error):
        with AnnotatedVideoWriter(tmp_path / 'none.mp4', 10, threshold=5.0):
            raise error()
    with pytest.raises(ValueError, match='frame 1 is 128x50, the first was 128x96'):  # a bad frame mid-way: the good ones are kept
        with AnnotatedVideoWriter(tmp_path / 'sizes.mp4', 10, threshold=5.0) as w:
            w.write(frame, objects_table().iloc[:0], 0.5)
            w.write(frame[:50], objects_table().iloc[:0], 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cut.mp4', 'sizes.mp4']
    with pytest.raises(ValueError, match='no frame was written'):
        with AnnotatedVideoWriter(tmp_path / 'empty.mp4', 10, threshold=5.0): pass
    assert not (tmp_path / 'empty.mp4').exists()


@pytest.fixture(scope='module')
def street_run(tmp_path_factory):
    "A smoke street run trained and scored by the stage functions (oracle boxes), as `mmp_repro run` makes it."
    from mmp_repro.pipeline import PipelineConfig, claim_run, extract_stage, score_stage, train_stage
    tmp = tmp_path_factory.mktemp('render')
    cfg = PipelineConfig.for_scale('smoke')
    train, test, videos = extract_stage(cfg, tmp / 'cache', progress=False)
    claim_run(cfg, tmp / 'run', train, test)
    model, loc = train_stage(cfg, train, tmp / 'run', 'cpu', progress=False)
    score_stage(cfg, model, loc, train, test, videos, tmp / 'run', 'cpu')
    return tmp / 'run', videos


def render_cli(*argv) -> dict:
    p = argparse.ArgumentParser(prog='mmp_repro')
    add_command(p.add_subparsers(dest='command'))
    args = p.parse_args(['render', *argv])
    return args.func(args)


def test_render_run_draws_the_scores_and_the_truth(street_run, tmp_path, capsys):
    from mmp_repro.pipeline import load_alarm
    run_dir, videos = street_run
    v = next(v for v in videos if v.regions is not None and len(v.regions))
    s = load_scored_video(run_dir, v.name)
    assert isinstance(s, ScoredVideo) and s.threshold == load_alarm(run_dir)['threshold']
    assert [c for c in s.objects.columns if c.startswith('z_')] == ['z_F', 'z_O', 'z_C'], 'γ = 0: location explains nothing'
    assert set(s.objects.class_name) <= {'person', 'bicycle', 'car', 'dog'}
    t = int(v.regions[0, 1])
    np.testing.assert_array_equal(s.truth_at(t), v.regions[v.regions[:, 1] == t, 2:6])

    out = render_run(run_dir, v.name, tmp_path / 'v.mp4', start=2, frames=20, width=360)
    back = decode(out)
    k = 360 / v.size[1]
    h = int(round(v.size[0] * k))
    assert len(back) == 20 and back[0].shape[:2] == (h + strip_height(h), 360)
    if shutil.which('ffprobe'): assert probe_video(out)['codec'] == 'h264'
    # frame t as rendered: the truth box's dashed white edge is there (2 px outside the box, scaled)
    x0, y0, x1, _ = v.regions[v.regions[:, 1] == t][0, 2:6] * k
    frame_t = back[t - 2].astype(int)
    edge = frame_t[int(round(y0 - 2)), int(round(x0)):int(round(x1)) + 1]
    assert (edge.min(1) > 200).any(), 'white dashes on the top edge of the true box'


def test_render_command_writes_mp4_and_gif_and_names_the_videos(street_run, tmp_path, capsys):
    from PIL import Image
    run_dir, videos = street_run
    name = videos[-1].name
    assert render_cli('--run-dir', str(run_dir), '--video', name, '--gif', str(tmp_path / 's.gif'), '--gif-stride', '3') == 0
    out = json.loads(capsys.readouterr().out)
    assert out['gif'] == str(tmp_path / 's.gif') and 'output' not in out, 'only the GIF was asked for'
    gif = Image.open(tmp_path / 's.gif')
    assert gif.n_frames == 10 and gif.size[0] == 360 and (tmp_path / 's.gif').stat().st_size < 3e6
    assert out['frames'] == videos[-1].num_frames and out['threshold'] > 0
    # a path names the video too; the default output goes to RUN_DIR/render
    assert render_cli('--run-dir', str(run_dir), '--video', str(videos[-1].path), '--frames', '5') == 0
    out = json.loads(capsys.readouterr().out)
    assert out['output'] == str(run_dir / 'render' / f'{name}.mp4') and len(decode(out['output'])) == 5
    with pytest.raises(ValueError, match='its test videos are: ' + ', '.join(v.name for v in videos)):
        render_cli('--run-dir', str(run_dir), '--video', 'nope')
    # a bad GIF request fails before the .mp4 is written
    with pytest.raises(ValueError, match='must be a .gif'):
        render_cli('--run-dir', str(run_dir), '--video', name, '--output', str(tmp_path / 'x.mp4'), '--gif', str(tmp_path / 'x.png'))
    assert not (tmp_path / 'x.mp4').exists()


def test_render_error_is_one_line_through_the_console_script(street_run):
    # needs `render` registered in cli.build_parser
    from conftest import ROOT, console_script
    run_dir, _ = street_run
    r = subprocess.run([console_script('mmp_repro'), 'render', '--run-dir', str(run_dir), '--video', 'nope'],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    if 'invalid choice' in r.stderr: pytest.skip('render is not registered in mmp_repro.cli yet')
    assert r.returncode == 1 and r.stderr.startswith('mmp_repro render: error:') and r.stderr.count('\n') == 1


def test_the_writer_keeps_only_the_history_the_strip_shows(tmp_path):
    # a live watch runs for hours: each frame must cost the same, whatever came before
    from mmp_repro.render import AnnotatedVideoWriter
    frame = np.zeros((48, 64, 3), np.uint8)
    empty = pd.DataFrame(columns=['x_min', 'y_min', 'x_max', 'y_max', 'score'])
    with AnnotatedVideoWriter(tmp_path / 'a.mp4', 10, 1.0, strip_frames=5) as w:
        for i in range(20): w.write(frame, empty, float(i))
        assert w.history == [15.0, 16.0, 17.0, 18.0, 19.0]
