"""Config files (`--config`, `mmp_repro config --print`), stdout/stderr discipline, and `mmp_repro.api` against the CLI."""
import contextlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, console_script
from mmp_repro.cli import main


def mmp(*args, timeout=300):
    "The `mmp_repro` console script in a subprocess: the exit code, stdout and stderr."
    return subprocess.run([console_script('mmp_repro'), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def cli(*args) -> tuple[int, str, str]:
    "`mmp_repro args` in this process (faster, for the checks that need no fresh interpreter)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module')
def street_run(tmp_path_factory):
    "`mmp_repro run --dataset street --scale smoke --quiet`: the run folder, the cache folder and the finished process."
    tmp = tmp_path_factory.mktemp('street')
    r = mmp('run', '--dataset', 'street', '--scale', 'smoke', '--run-dir', tmp / 'run', '--cache-root', tmp / 'cache', '--quiet')
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / 'run', tmp / 'cache', r


def test_quiet_run_prints_one_json_object_and_nothing_on_stderr(street_run):
    _, _, r = street_run
    metrics = json.loads(r.stdout)  # the whole of stdout is one JSON object: anything else around it fails here
    assert isinstance(metrics, dict) and {'rbdc', 'tbdc', 'auc_micro'} <= set(metrics)
    assert r.stderr == ''


def test_progress_and_epoch_lines_go_to_stderr(street_run, tmp_path):
    _, cache, _ = street_run
    r = mmp('run', '--dataset', 'street', '--scale', 'smoke', '--run-dir', tmp_path / 'run', '--cache-root', cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert isinstance(json.loads(r.stdout), dict)
    assert 'epoch 1/1:' in r.stderr and 'resolved config' in r.stderr and 'videos' in r.stderr  # the tqdm bar


def test_config_json_is_accepted_back_and_printed_the_same(street_run, tmp_path):
    run_dir, cache, _ = street_run
    saved = json.loads((run_dir / 'config.json').read_text())
    r = mmp('config', '--print', '--config', run_dir / 'config.json', '--json')
    assert r.returncode == 0 and r.stderr == '', r.stderr
    assert json.loads(r.stdout) == saved
    # the YAML form too, and that YAML read back as a config file
    code, out, err = cli('config', '--print', '--config', run_dir / 'config.json')
    assert code == 0 and yaml.safe_load(out) == saved, err
    (tmp_path / 'run.yaml').write_text(out)
    assert json.loads(cli('config', '--print', '--config', tmp_path / 'run.yaml', '--json')[1]) == saved
    # a stage started from it makes the same run: `extract` writes the same config.json (objects from the cache)
    r = mmp('extract', '--config', run_dir / 'config.json', '--run-dir', tmp_path / 'again', '--cache-root', cache, '--quiet')
    assert r.returncode == 0 and r.stderr == '', r.stderr[-2000:]
    assert json.loads((tmp_path / 'again' / 'config.json').read_text()) == saved
    assert set(json.loads(r.stdout)) == {'train_objects', 'test_objects', 'config'}


def test_flags_override_the_file_and_the_file_overrides_the_preset(tmp_path):
    (tmp_path / 'run.yaml').write_text('scale: smoke\naspects: FO\nrun_dir: from-file\ndevice: cpu\n'
                                       'train:\n  epochs: 3\n  batch_size: 16\n')
    code, out, err = cli('config', '--print', '--json', '--config', tmp_path / 'run.yaml', '--epochs', '5', '--seed', '2')
    assert code == 0, err
    got = json.loads(out)
    assert (got['train']['epochs'], got['train']['batch_size']) == (5, 16)  # flag over file; file over preset (64)
    assert (got['aspects'], got['train']['aspects']) == ('FO', ['F', 'O'])  # the file's aspects reach the training
    assert (got['seed'], got['train']['seed']) == (2, 2)
    assert (got['net']['crop_size'], got['location_steps']) == (16, 20)  # what the file leaves out: the smoke preset
    assert (got['run_dir'], got['device']) == ('from-file', 'cpu')
    assert 'cache_root' not in got
    code, out, _ = cli('config', '--print', '--json', '--config', tmp_path / 'run.yaml', '--run-dir', 'from-flag', '--aspects', 'F')
    got = json.loads(out)
    assert (got['run_dir'], got['aspects'], got['train']['aspects']) == ('from-flag', 'F', ['F'])
    # a flag beats a full config.json as well, and carries what depends on it (window -> the network's input channels)
    full = tmp_path / 'config.json'
    full.write_text(json.dumps({k: v for k, v in got.items() if k not in ('run_dir', 'device')}))
    got = json.loads(cli('config', '--print', '--json', '--config', full, '--window', '3')[1])
    assert (got['objects']['window'], got['net']['frame_channels'], got['net']['flow_channels']) == (3, 6, 2)
    # the flow: the street's preset, a file's choice over it, and a flag over the file
    assert got['objects']['flow'] == 'farneback-small'
    (tmp_path / 'dis.yaml').write_text('scale: smoke\nobjects:\n  flow: dis\n')
    assert json.loads(cli('config', '--print', '--json', '--config', tmp_path / 'dis.yaml')[1])['objects']['flow'] == 'dis'
    got = json.loads(cli('config', '--print', '--json', '--config', tmp_path / 'dis.yaml', '--flow', 'farneback')[1])
    assert got['objects']['flow'] == 'farneback'


def test_unknown_key_names_the_file_the_key_and_the_nearest_key(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('scale: smoke\ntrain:\n  epoch: 3\n')
    r = mmp('run', '--config', bad, '--run-dir', tmp_path / 'run')
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr.strip() == f"mmp_repro run: error: {bad}: unknown key 'train.epoch' (did you mean 'train.epochs'?)"
    assert not (tmp_path / 'run').exists()
    bad.write_text('detectr: oracle\n')
    assert "unknown key 'detectr' (did you mean 'detector'?)" in cli('config', '--print', '--config', bad)[2]
    bad.write_text('- a list\n')
    assert 'must be a mapping' in cli('extract', '--config', bad, '--run-dir', tmp_path / 'run')[2]
    code, _, err = cli('run', '--scale', 'smoke')
    assert code == 1 and 'give --run-dir, or run_dir in the --config file' in err


def test_later_stages_take_the_config_and_refuse_other_settings(street_run, tmp_path):
    run_dir, cache, _ = street_run
    cfg = tmp_path / 'run.yaml'
    cfg.write_text(yaml.safe_dump({'run_dir': str(run_dir), 'cache_root': str(cache), 'dataset': 'street', 'scale': 'smoke'}))
    code, out, err = cli('evaluate', '--config', cfg, '--quiet')
    assert code == 0 and err == '', err
    assert json.loads(out)['rbdc'] == json.loads((run_dir / 'metrics.json').read_text())['rbdc']
    cfg.write_text(yaml.safe_dump({'run_dir': str(run_dir), 'train': {'epochs': 4}}))
    code, out, err = cli('evaluate', '--config', cfg)
    assert code == 1 and out == '' and 'train.epochs: 4 given, 1 in the run' in err


def test_api_fit_score_save_load_equal_the_cli(street_run, tmp_path):
    from mmp_repro.api import MMPAMSModel
    from mmp_repro.pipeline import load_split
    run_dir, cache, _ = street_run
    model = MMPAMSModel.fit('street', scale='smoke', run_dir=tmp_path / 'api', cache_root=cache, progress=False)
    from_cli = MMPAMSModel.load(run_dir, cache_root=cache, progress=False)
    videos = load_split(model.cfg, 'test')
    # the alarm threshold, calibrated on the same training objects scored by the same model
    assert model.threshold == from_cli.threshold == json.loads((run_dir / 'alarm.json').read_text())['threshold']
    for v in videos:
        expected = pd.read_csv(run_dir / 'objects' / f'{v.name}.csv')
        cols = [c for c in expected.columns if c not in ('box_speed', 'box_nearest')]  # evaluation references, not scores
        scores = model.score(v)
        assert list(scores.objects.columns) == cols[:6] + ['class_name'] + cols[6:]
        pd.testing.assert_frame_equal(scores.objects[cols], expected[cols], check_dtype=False, rtol=1e-9)
        np.testing.assert_allclose(scores.frames.score, np.loadtxt(run_dir / 'frame_scores' / f'{v.name}.txt'), atol=1e-6)
        assert list(scores.frames.frame_idx) == list(range(v.num_frames)) and scores.threshold == model.threshold
    # restored from its checkpoint, a model computes in another memory layout than just after training (channels
    # last on the CPU): the same scores up to float rounding
    pd.testing.assert_frame_equal(from_cli.score(v).objects, scores.objects, check_exact=False, rtol=1e-5)
    saved = model.save(tmp_path / 'saved')
    assert model.run_dir == saved and (saved / 'model' / 'last.pt').exists()
    again = MMPAMSModel.load(saved, cache_root=cache, progress=False)
    pd.testing.assert_frame_equal(again.score(videos[0]).objects, from_cli.score(videos[0]).objects)
    with pytest.raises(FileExistsError):
        model.save(tmp_path / 'api')  # a folder that holds something is never overwritten
    with pytest.raises(FileNotFoundError, match='is not a trained mmp_repro run: it has no config.json'):
        MMPAMSModel.load(tmp_path)
    with pytest.raises(ValueError, match="unknown key 'epochs' \\(did you mean 'train.epochs'\\?\\)"):
        MMPAMSModel.fit('street', scale='smoke', epochs=2)


def test_api_fits_a_list_of_videos(street_run, tmp_path):
    from mmp_repro.api import MMPAMSModel, VideoScores
    from mmp_repro.street import ensure_street
    _, cache, _ = street_run
    street = ensure_street('smoke', 0)
    train = sorted((street / 'training' / 'videos').glob('*.avi'))[:1]
    # background subtraction: a detector that needs no weights (and no size filter: the smoke street's people are small);
    # the list's videos become a 'folder' run
    model = MMPAMSModel.fit([str(p) for p in train], scale='smoke', run_dir=tmp_path / 'run', cache_root=cache,
                            detector='bgsub', detection_preset='none', progress=False)
    assert (model.cfg.dataset, model.cfg.detector) == ('folder', 'bgsub')
    test = sorted((street / 'testing' / 'frames').iterdir())[1]
    scores = model.score(test)
    assert isinstance(scores, VideoScores) and scores.video == test.name
    assert len(scores.frames) == len(list(test.iterdir())) and np.isfinite(scores.frames.score).all()
    assert len(scores.objects) and {'z_F', 'z_O', 'z_C', 'score', 'class_name'} <= set(scores.objects.columns)


def test_a_scale_flag_over_a_resolved_file_is_refused():
    # a run's config.json holds its scale's crop size, width and epochs: another --scale over it would mislabel the run
    from mmp_repro.api import merge_settings
    with pytest.raises(ValueError, match="--scale quick differs from the config file's scale smoke"):
        merge_settings({'scale': 'smoke', 'train': {'epochs': 1}}, {'scale': 'quick'})
    assert merge_settings({'scale': 'smoke'}, {'scale': 'quick'})['scale'] == 'quick'  # a file that states only the scale
