"""RBDC/TBDC and frame AUC: agreement with a plain-loop reference, invariances, properties, files and the console script."""
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmp_repro.metrics import (
    frame_auc,
    rbdc_tbdc,
    read_region_folder,
    region_curves,
    write_region_folder,
)

SETTINGS = settings(max_examples=150, deadline=None)


# ---- a deliberately plain reference: one threshold at a time, every pair compared in Python ----

def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union


def _area(points):
    "Area under a polyline of (fpr, rate) points on [0, 1]: cut at 1, or extended flat to 1."
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 >= 1: break
        if x1 > 1: y1, x1 = y0 + (y1 - y0) * (1 - x0) / (x1 - x0), 1.0
        area += (x1 - x0) * (y0 + y1) / 2
    x, y = points[-1]
    if x < 1: area += (1 - x) * y
    return area


def reference(tracks, dets, num_frames):
    regions = [(v, int(r[0]), int(r[1]), r[2:6]) for v in tracks for r in tracks[v]]
    detections = [(v, int(r[0]), r[1:5], r[5]) for v in dets for r in dets[v]]
    track_sizes = {}
    for v, t, _, _ in regions: track_sizes[(v, t)] = track_sizes.get((v, t), 0) + 1
    rpoints, tpoints = [(0.0, 0.0)], [(0.0, 0.0)]
    for thr in sorted({d[3] for d in detections}, reverse=True):
        found, fp = set(), 0
        for v, f, box, s in detections:
            if s < thr: continue
            hits = {i for i, (gv, _, gf, gbox) in enumerate(regions) if gv == v and gf == f and _iou(gbox, box) >= 0.1}
            fp += not hits
            found |= hits
        per_track = {}
        for i in found: per_track[regions[i][:2]] = per_track.get(regions[i][:2], 0) + 1
        n_tracks_found = sum(1 for k, c in per_track.items() if c >= 1 and 10 * c >= track_sizes[k])
        rpoints.append((fp / num_frames, len(found) / len(regions)))
        tpoints.append((fp / num_frames, n_tracks_found / len(track_sizes)))
    return _area(rpoints), _area(tpoints)


# ---- random inputs ----

@st.composite
def boxes(draw):
    x, y = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    return [x, y, x + draw(st.integers(0, 8)), y + draw(st.integers(0, 8))]


@st.composite
def region_data(draw, max_frames=12):
    n_videos = draw(st.integers(1, 3))
    tracks, dets, total = {}, {}, 0
    for v in range(n_videos):
        n_frames = draw(st.integers(1, max_frames))
        total += n_frames
        rows = []
        for t in range(draw(st.integers(0, 3))):
            frames = draw(st.lists(st.integers(0, n_frames - 1), min_size=1, max_size=n_frames, unique=True))
            rows += [[t, f, *draw(boxes())] for f in frames]
        tracks[f'v{v}'] = np.array(rows, dtype=float).reshape(-1, 6)
        dets[f'v{v}'] = np.array([[draw(st.integers(0, n_frames - 1)), *draw(boxes()), draw(st.integers(0, 5))]
                                  for _ in range(draw(st.integers(0, 10)))], dtype=float).reshape(-1, 6)
    if sum(len(t) for t in tracks.values()) == 0:  # RBDC needs at least one region
        tracks['v0'] = np.array([[0, 0, 2, 2, 6, 6]], dtype=float)
    return tracks, dets, total + draw(st.integers(0, 3))


@SETTINGS
@given(region_data())
def test_matches_reference(data):
    tracks, dets, n = data
    got = rbdc_tbdc(tracks, dets, n)
    want = reference(tracks, dets, n)
    assert got['rbdc'] == pytest.approx(want[0], abs=1e-12)
    assert got['tbdc'] == pytest.approx(want[1], abs=1e-12)


@SETTINGS
@given(region_data())
def test_curves_are_monotone_and_areas_in_unit_interval(data):
    c = region_curves(*data)
    for a in (c.fpr, c.region_rate, c.track_rate): assert (np.diff(a) >= 0).all()
    assert c.region_rate[-1] <= 1 and c.track_rate[-1] <= 1
    assert 0 <= c.rbdc <= 1 and 0 <= c.tbdc <= 1
    assert (np.diff(c.thresholds) < 0).all()


@SETTINGS
@given(region_data(), st.integers(0, 2), boxes())
def test_a_lower_scored_detection_never_lowers_the_area(data, v, box):
    tracks, dets, n = data
    v = sorted(dets)[v % len(dets)]
    before = rbdc_tbdc(tracks, dets, n)
    low = min((d[:, 5].min() for d in dets.values() if len(d)), default=0) - 1
    dets = {**dets, v: np.vstack([dets[v], [[0, *box, low]]])}
    after = rbdc_tbdc(tracks, dets, n)
    assert after['rbdc'] >= before['rbdc'] - 1e-12 and after['tbdc'] >= before['tbdc'] - 1e-12


@SETTINGS
@given(region_data())
def test_removing_false_positives_never_lowers_the_area(data):
    tracks, dets, n = data
    moved = {v: d.copy() for v, d in dets.items()}
    for d in moved.values(): d[:, 1:5] += 1000  # far from every region: all false positives
    clean = {v: d[:0] for v, d in dets.items()}
    assert rbdc_tbdc(tracks, clean, n) == {'rbdc': 0.0, 'tbdc': 0.0}
    assert rbdc_tbdc(tracks, moved, n) == {'rbdc': 0.0, 'tbdc': 0.0}
    # dropping the false positives of the original detections
    curves = region_curves(tracks, dets, n)
    kept = {}
    for v, d in dets.items():
        hit = np.zeros(len(d), bool)
        for i, row in enumerate(d):
            hit[i] = any(_iou(g[2:6], row[1:5]) >= 0.1 for g in tracks[v] if g[1] == row[0])
        kept[v] = d[hit]
    after = rbdc_tbdc(tracks, kept, n)
    assert after['rbdc'] >= curves.rbdc - 1e-12 and after['tbdc'] >= curves.tbdc - 1e-12


@SETTINGS
@given(region_data())
def test_reporting_every_region_first_scores_one(data):
    tracks, dets, n = data
    top = max((d[:, 5].max() for d in dets.values() if len(d)), default=0) + 1
    perfect = {v: np.vstack([np.c_[tracks[v][:, 1:], np.full(len(tracks[v]), top)], dets[v]]) for v in tracks}
    assert rbdc_tbdc(tracks, perfect, n) == {'rbdc': 1.0, 'tbdc': 1.0}


@SETTINGS
@given(region_data(), st.randoms(use_true_random=False))
def test_invariant_to_video_and_row_order_and_names(data, rnd):
    tracks, dets, n = data
    want = rbdc_tbdc(tracks, dets, n)
    names = list(tracks)
    rnd.shuffle(names)
    shuffle = lambda a: a[rnd.sample(range(len(a)), len(a))]
    renamed = {v: f'z{i}' for i, v in enumerate(names)}
    t2 = {renamed[v]: shuffle(tracks[v]) for v in names}
    d2 = {renamed[v]: shuffle(dets[v]) for v in reversed(names)}
    assert rbdc_tbdc(t2, d2, n) == want


@SETTINGS
@given(region_data())
def test_invariant_to_monotone_score_transforms(data):
    tracks, dets, n = data
    want = rbdc_tbdc(tracks, dets, n)
    for f in (lambda s: 3 * s + 1, lambda s: np.exp(s) / 1000, lambda s: -1 / (s + 1)):
        scaled = {v: np.c_[d[:, :5], f(d[:, 5])] for v, d in dets.items()}
        assert rbdc_tbdc(tracks, scaled, n) == want


# ---- frame AUC ----

@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1)), min_size=1, max_size=8), min_size=1, max_size=4))
def test_frame_auc_properties(videos):
    scores = {f'v{i}': np.array([s for s, _ in fr], float) for i, fr in enumerate(videos)}
    labels = {f'v{i}': np.array([y for _, y in fr]) for i, fr in enumerate(videos)}
    pooled = np.concatenate(list(labels.values()))
    if pooled.min() == pooled.max():
        with pytest.raises(ValueError, match='both normal and anomalous'): frame_auc(scores, labels)
        return
    a = frame_auc(scores, labels)
    b = frame_auc({v: 2 * s + 5 for v, s in reversed(scores.items())}, labels)
    assert a['micro'] == pytest.approx(b['micro']) and (a['macro'] == pytest.approx(b['macro']) or math.isnan(a['macro']))
    assert a['skipped'] == [v for v in sorted(labels) if labels[v].min() == labels[v].max()]
    assert set(a['per_video']) | set(a['skipped']) == set(labels)
    assert 0 <= a['micro'] <= 1


# ---- files and the console script ----

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), *[st.floats(0, 4000, allow_subnormal=False)] * 2,
                          st.floats(0, 1)), max_size=20))
def test_detection_files_round_trip(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp('dets')
    arr = np.array([[f, x, y, x + 5.5, y + 3, s] for f, x, y, s in rows], float).reshape(-1, 6)
    write_region_folder(folder, {'vid': arr}, 'detections', suffix='.csv')
    np.testing.assert_array_equal(read_region_folder(folder, 'detections')['vid'], arr)


@pytest.mark.parametrize('text, rows', [
    ('', []),
    ('# only a comment\n\n', []),
    ('track_id,frame_idx,x_min,y_min,x_max,y_max\n', []),
    ('track_id,frame_idx,x_min,y_min,x_max,y_max\n3,1,0,0,4,4\n', [[3, 1, 0, 0, 4, 4]]),
    ('  # indented comment\n3,1,0,0,4,4\n   \n3, 2, 0.5, 0, 4, 4\r\n', [[3, 1, 0, 0, 4, 4], [3, 2, 0.5, 0, 4, 4]]),
])
def test_track_files_that_read(tmp_path, text, rows):
    (tmp_path / 'v.txt').write_text(text)
    got = read_region_folder(tmp_path, 'tracks')['v']
    np.testing.assert_array_equal(got, np.array(rows, float).reshape(-1, 6))


@pytest.mark.parametrize('text, message', [
    ('1,0,0,0,4,4\n1,1,0,0,4\n', 'v.txt:2: expected 6'),
    ('1,0,0,0,4,4\n\n# c\n1,1,0,0,4,4,9\n', 'v.txt:4: expected 6'),
    ('1,0,0,0,4,4\n1,1,0,0,4,four\n', 'v.txt:2: expected 6'),
    ('1 0 0 0 4 4\n', 'v.txt:1: expected 6'),
    ('# c\n1,0,0,0,4,nan\n', 'v.txt:2: a value is not a finite number'),
    ('1,0,0,0,4,4\n1,2.5,0,0,4,4\n', 'v.txt:2: track_id and frame_idx must be integers'),
])
def test_track_files_that_fail(tmp_path, text, message):
    (tmp_path / 'v.txt').write_text(text)
    with pytest.raises(ValueError, match=message.replace('.', r'\.')): read_region_folder(tmp_path, 'tracks')


def _cli(*args):
    script = Path(sys.executable).with_name('mmp_eval_regions')
    cmd = [str(script)] if script.exists() else [
        sys.executable, '-c', 'import sys; from mmp_repro.metrics import eval_regions_cli; sys.exit(eval_regions_cli())']
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def folders(tmp_path):
    tracks = {'01_0014': np.array([[1, f, 10, 10, 29, 29] for f in range(4)], float),
              '01_0015': np.zeros((0, 6))}
    dets = {'01_0014': np.array([[0, 10, 10, 29, 29, .9], [1, 60, 60, 69, 69, .8], [2, 11, 11, 30, 30, .7]]),
            '01_0015': np.array([[5, 0, 0, 9, 9, .95]])}
    write_region_folder(tmp_path / 'tracks', tracks, 'tracks')
    write_region_folder(tmp_path / 'dets', dets, 'detections')
    return tmp_path, tracks, dets


def test_cli_prints_json_last(folders):
    tmp, tracks, dets = folders
    r = _cli('--tracks', tmp / 'tracks', '--detections', tmp / 'dets', '--num_frames', 10)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    want = rbdc_tbdc(tracks, dets, 10)
    assert out['rbdc'] == pytest.approx(want['rbdc']) and out['tbdc'] == pytest.approx(want['tbdc'])
    assert (out['n_videos'], out['n_regions'], out['n_detections']) == (2, 4, 4)


def test_cli_help():
    r = _cli('--help')
    assert r.returncode == 0 and '--num_frames' in r.stdout and 'RBDC' in r.stdout


@pytest.mark.parametrize('break_it, message', [
    (lambda t: (t / 'dets' / '01_0015.txt').unlink(), "only in tracks: ['01_0015']"),
    (lambda t: (t / 'dets' / '01_0014.txt').write_text('0,10,10,29,29,0.9\n1,2,3\n'), '01_0014.txt:2: expected 6'),
    (lambda t: (t / 'tracks' / '01_0014.txt').write_text('1,0,10,10,5,29\n'), '01_0014.txt:1: x_max < x_min'),
    (lambda t: (t / 'tracks' / '01_0015.csv').write_text(''), "two files for video '01_0015'"),
    (lambda t: [p.unlink() for p in (t / 'dets').iterdir()], 'no .txt or .csv detections files'),
])
def test_cli_bad_input_exits_with_one_line(folders, break_it, message):
    tmp = folders[0]
    break_it(tmp)
    r = _cli('--tracks', tmp / 'tracks', '--detections', tmp / 'dets', '--num_frames', 10)
    assert r.returncode == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_too_few_frames(folders):
    tmp = folders[0]
    r = _cli('--tracks', tmp / 'tracks', '--detections', tmp / 'dets', '--num_frames', 3)
    assert r.returncode == 1 and 'num_frames is 3' in r.stderr
    r = _cli('--tracks', tmp / 'missing', '--detections', tmp / 'dets', '--num_frames', 10)
    assert r.returncode == 1 and 'does not exist' in r.stderr


# ---- one set of input checks for the library, the console script and the pipeline ----

def test_num_frames_must_cover_each_videos_largest_frame_index(tmp_path):
    "Three distinct frames used to pass --num_frames 3 with detections up to frame 500 (RBDC 0.667 instead of 0.998)."
    tracks = {'v': np.array([[1, 0, 0, 0, 9, 9], [1, 500, 0, 0, 9, 9]], float), 'w': np.array([[1, 0, 0, 0, 9, 9]], float)}
    dets = {'v': np.array([[0, 0, 0, 9, 9, .9], [250, 50, 50, 59, 59, .8], [500, 0, 0, 9, 9, .7]]), 'w': np.zeros((0, 6))}
    with pytest.raises(ValueError, match=r"num_frames is 501, but .* at least 502 .* video 'v' uses frame index 500"):
        region_curves(tracks, dets, 501)  # v has at least 501 frames and w at least 1
    assert region_curves(tracks, dets, 502).n_frames == 502
    write_region_folder(tmp_path / 'tracks', tracks, 'tracks')
    write_region_folder(tmp_path / 'dets', dets, 'detections')
    r = _cli('--tracks', tmp_path / 'tracks', '--detections', tmp_path / 'dets', '--num_frames', 3)
    assert r.returncode == 1 and r.stdout == '', r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and "video 'v' uses frame index 500" in r.stderr, r.stderr


def test_num_frames_counts_the_frames_of_every_video():
    "Two videos of 10 frames each need 20 frames in all, though only 2 x 2 (video, frame) pairs are used."
    tracks = {v: np.array([[1, 0, 0, 0, 9, 9], [1, 9, 0, 0, 9, 9]], float) for v in ('a', 'b')}
    dets = {v: np.array([[9, 0, 0, 9, 9, .5]]) for v in ('a', 'b')}
    with pytest.raises(ValueError, match='at least 20'): rbdc_tbdc(tracks, dets, 19)
    assert rbdc_tbdc(tracks, dets, 20) == {'rbdc': 0.5, 'tbdc': 1.0}  # frame 9 found, frame 0 never


@pytest.mark.parametrize('kwarg, value', [('iou_threshold', 1.5), ('iou_threshold', 0.0), ('iou_threshold', float('nan')),
                                          ('track_fraction', -1.0), ('track_fraction', 1.01)])
def test_thresholds_outside_the_unit_interval_are_refused(folders, kwarg, value):
    _, tracks, dets = folders
    with pytest.raises(ValueError, match=rf'^{kwarg} must lie in \(0, 1\], got'): rbdc_tbdc(tracks, dets, 10, **{kwarg: value})
    assert rbdc_tbdc(tracks, dets, 10, **{kwarg: 1.0})  # 1 itself is allowed


@pytest.mark.parametrize('flag, value', [('--iou', 1.5), ('--iou', 0), ('--track_fraction', -1), ('--track_fraction', 'nan')])
def test_cli_refuses_thresholds_outside_the_unit_interval(folders, flag, value):
    tmp = folders[0]
    r = _cli('--tracks', tmp / 'tracks', '--detections', tmp / 'dets', '--num_frames', 10, flag, value)
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr.strip() == f'mmp_eval_regions: error: {flag} must lie in (0, 1], got {float(value)}', r.stderr


@pytest.mark.parametrize('text, reason', [
    ('1,0,0,0,4,4\n1,2.5,0,0,4,4\n', ':2: track_id and frame_idx must be integers'),
    ('1.5,0,0,0,4,4\n', ':1: track_id and frame_idx must be integers'),
    ('# c\n1,0,0,0,4,inf\n', ':2: a value is not a finite number'),
    ('1,0,5,0,4,4\n', ':1: x_max < x_min'),
    ('1,-2,0,0,4,4\n', ':1: frame_idx is negative'),
    ('1,0,0,0,4\n', ':1: expected 6 comma-separated numbers'),
])
def test_pipeline_and_cli_give_the_same_verdict_on_a_bad_track_file(tmp_path, text, reason):
    from mmp_repro.tracks import load_videos
    from mmp_repro.video import write_shanghaitech_fixture
    root = write_shanghaitech_fixture(tmp_path / 'sht', n_train=0, n_test=2)
    (root / 'tracks' / '01_0001.txt').write_text(text)
    with pytest.raises(ValueError) as pipeline:
        load_videos('shanghaitech', root, tracks_dir=root / 'tracks')  # what the pipeline's load_split calls
    assert f"01_0001.txt{reason}" in str(pipeline.value)
    write_region_folder(tmp_path / 'dets', {'01_0001': np.zeros((0, 6)), '01_0002': np.zeros((0, 6))}, 'detections')
    r = _cli('--tracks', root / 'tracks', '--detections', tmp_path / 'dets', '--num_frames', 12)
    assert r.returncode == 1 and r.stderr.strip() == f'mmp_eval_regions: error: {pipeline.value}', r.stderr
