"""The `full` scale (the paper's networks and settings) on fixture-sized datasets in the real on-disk layouts:
it must start, extract, train one epoch, score and evaluate against the layout's track files. The fixtures
hold no real objects, so boxes come from files through `--detections`, the way a user brings their own
detector; the location module gets 50 steps instead of the scale's 2000 to keep the test short."""
import json
import subprocess

import numpy as np
import pytest

from conftest import ROOT, console_script
from mmp_repro.detection import PERSON, Detections, one_hot, write_detections
from mmp_repro.video import read_dataset, write_avenue_fixture, write_ped2_fixture, write_shanghaitech_fixture

FIXTURES = {'ped2': write_ped2_fixture, 'avenue': write_avenue_fixture, 'shanghaitech': write_shanghaitech_fixture}
TRACKS = {'ped2': 'rj_tracks', 'avenue': 'rj_tracks', 'shanghaitech': 'tracks'}  # where the fixtures put them


def write_box_files(dataset: str, root, folder) -> int:
    "One 32x32 person box per frame, drifting right, for every video of both splits; returns the number of files."
    n = 0
    for split, name in (('train', 'train'), ('test', 'test')):
        for v in read_dataset(dataset, root, name):
            H, W = v.size
            t = np.arange(v.num_frames)
            x0 = np.minimum(2 + 2 * t, W - 34).astype(float)
            boxes = np.stack([x0, np.full_like(x0, H // 2 - 16), x0 + 32, np.full_like(x0, H // 2 + 16)], 1)
            write_detections(Detections(t, boxes, np.ones(len(t)), one_hot(np.full(len(t), PERSON))),
                             folder / split / f'{v.name}.txt')
            n += 1
    return n


@pytest.mark.parametrize('dataset', list(FIXTURES))
def test_full_scale_runs_one_epoch_on_the_real_layout(tmp_path, dataset):
    root = FIXTURES[dataset](tmp_path / dataset, n_frames=5, size=(72, 96))
    dets = tmp_path / 'detections'
    assert write_box_files(dataset, root, dets) == 4
    run_dir = tmp_path / 'run'
    r = subprocess.run([console_script('mmp_repro'), 'run', '--dataset', dataset, '--root', str(root), '--scale', 'full',
                        '--epochs', '1', '--location-steps', '50', '--detections', str(dets),
                        '--tracks', str(root / TRACKS[dataset]), '--run-dir', str(run_dir),
                        '--cache-root', str(tmp_path / 'cache'), '--device', 'cpu', '--no-progress'],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'derived from pixel masks' not in r.stderr, 'the track files were used'
    cfg = json.loads((run_dir / 'config.json').read_text())
    # the paper's settings, except the one epoch asked for
    assert (cfg['scale'], cfg['net']['crop_size'], cfg['train']['epochs'], cfg['train']['lr']) == ('full', 64, 1, 1e-3)
    assert cfg['detection_preset'] == dataset and cfg['detector'] == 'precomputed'
    log = (run_dir / 'model' / 'log.jsonl').read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])['samples'] == 8, 'two training videos, 4 frame pairs each'
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(0 <= metrics[k] <= 1 for k in ('rbdc', 'tbdc', 'auc_micro'))
