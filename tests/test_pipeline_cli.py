"""The MMP-AMS stages through the `mmp_repro` command, on the smoke street benchmark."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, console_script


def run(*args, timeout=600):
    return subprocess.run([console_script('mmp_repro'), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope='module')
def staged_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('stages')
    run_dir, cache = tmp / 'run', tmp / 'cache'
    common = ['--run-dir', str(run_dir), '--cache-root', str(cache), '--no-progress']
    r = run('extract', *common, '--scale', 'smoke', '--aspects', 'FO')
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert counts['train_objects'] > 0 and counts['test_objects'] > 0
    for stage in ('train', 'score', 'evaluate'):
        r = run(stage, *common)
        assert r.returncode == 0, f'{stage}: {r.stderr[-2000:]}'
    return run_dir, json.loads(r.stdout.strip().splitlines()[-1])


def test_stages_one_by_one(staged_run):
    run_dir, metrics = staged_run
    assert set(metrics) >= {'rbdc', 'tbdc', 'auc_micro', 'auc_macro'}
    assert all(0 <= metrics[k] <= 1 for k in ('rbdc', 'tbdc', 'auc_micro'))
    cfg = json.loads((run_dir / 'config.json').read_text())
    assert cfg['aspects'] == 'FO' and cfg['train']['aspects'] == ['F', 'O']
    assert (run_dir / 'model' / 'last.pt').exists() and any((run_dir / 'scores').iterdir())


def test_watch_streams_frame_scores(staged_run):
    run_dir, _ = staged_run
    cfg = json.loads((run_dir / 'config.json').read_text())
    street = Path.home() / '.cache' / 'mmp_repro' / 'street'
    frames = sorted(street.glob('smoke-seed0/testing/frames/*'))
    if not frames:
        pytest.skip('the smoke street is not in the default cache')
    r = run('watch', str(frames[0]), '--run-dir', str(run_dir), '--detector', 'bgsub')
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    n_frames = len(list(frames[0].iterdir()))
    assert len(lines) == n_frames - 1, 'one line per frame that has a next frame'
    assert [int(l.split('\t')[0]) for l in lines] == list(range(n_frames - 1))
    assert cfg['objects']['window'] == 2


def test_stage_errors_are_one_line(tmp_path):
    r = run('evaluate', '--run-dir', str(tmp_path / 'nothing'))
    assert r.returncode == 1
    assert r.stderr.count('\n') == 1 and 'config.json not found' in r.stderr
    r = run('run', '--run-dir', str(tmp_path / 'x'), '--dataset', 'folder')
    assert r.returncode == 1 and 'needs --root' in r.stderr
    r = run('train', '--help')
    assert r.returncode == 0 and '--run-dir' in r.stdout


def test_run_on_unlabelled_videos_scores_without_metrics(tmp_path):
    # a user's folder: normal videos in train/, videos to score in test/, no labels anywhere
    from mmp_repro.video import write_folder_fixture
    root = tmp_path / 'mine'
    write_folder_fixture(root / 'train', n_frames=20, size=(64, 96), seed=0)
    write_folder_fixture(root / 'test', n_frames=20, size=(64, 96), seed=5)
    run_dir = tmp_path / 'run'
    r = run('run', '--dataset', 'folder', '--root', str(root), '--detector', 'bgsub', '--detection-preset', 'none',
            '--scale', 'smoke', '--run-dir', str(run_dir), '--cache-root', str(tmp_path / 'cache'), '--no-progress')
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics['evaluated'] is False and metrics['n_test_objects'] > 0
    assert sorted(p.name for p in (run_dir / 'frame_scores').iterdir()) == ['cam1.txt', 'cam2.txt', 'cam3.txt']
