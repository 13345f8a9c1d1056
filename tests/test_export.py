"""`mmp_repro export` on a real run: the exported scorer, loaded without mmp_repro (ONNX through onnxruntime,
TorchScript through `torch.jit.load`), gives the eager scoring path's aspect losses and the run's z-scores and scores
on the run's own test objects; `export.json` describes it; bad input ends in one-line errors."""
import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, console_script

# run by a separate interpreter in which `import mmp_repro` fails: the exported file must load and run alone
RUNNER = r'''
import json, sys
sys.modules['mmp_repro'] = None
import numpy as np
model, spec, inputs, out = sys.argv[1:]
names = [i['name'] for i in json.load(open(spec))['inputs']]
x = dict(np.load(inputs))
if model.endswith('.onnx'):
    import onnxruntime as ort
    session = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
    run = lambda d: session.run(['losses', 'z', 'score'], {i.name: d[i.name] for i in session.get_inputs()})
else:
    import torch
    graph = torch.jit.load(model)
    def run(d):
        with torch.no_grad(): return [t.numpy() for t in graph(*(torch.from_numpy(d[k]) for k in names))]
batch, one = run(x), run({k: v[:1] for k, v in x.items()})
np.savez(out, losses=batch[0], z=batch[1], score=batch[2], losses_1=one[0], score_1=one[2])
'''


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    "A smoke street run made with the stage functions, its test objects and the eager scoring path's losses."
    from mmp_repro.export import INPUTS, samples_to_inputs, scored_aspects
    from mmp_repro.objects import ObjectDataset
    from mmp_repro.pipeline import PipelineConfig, claim_run, extract_stage, mask_for, score_stage, train_stage
    from mmp_repro.scoring import location_losses, model_losses
    tmp = tmp_path_factory.mktemp('export')
    cfg = PipelineConfig.for_scale('smoke')
    train, test, videos = extract_stage(cfg, tmp / 'cache', progress=False)
    run = tmp / 'run'
    claim_run(cfg, run, train, test)
    model, loc = train_stage(cfg, train, run, 'cpu', progress=False)
    score_stage(cfg, model, loc, train, test, videos, run, 'cpu')
    aspects = scored_aspects(cfg.aspects, loc)
    ds = ObjectDataset(test)
    ref = model_losses(model, ds, mask_for(cfg), tuple(cfg.aspects), cfg.train.distances)
    ref.update(location_losses(loc, ds))
    inputs = {k: np.concatenate([samples_to_inputs(s, cfg.objects.flow_scale)[k] for s in test]) for k in INPUTS}
    objects = pd.concat([pd.read_csv(run / 'objects' / f'{v.name}.csv') for v in videos], ignore_index=True)
    regions = np.concatenate([np.loadtxt(run / 'scores' / f'{v.name}.txt', delimiter=',', ndmin=2) for v in videos])
    return {'run': run, 'tmp': tmp, 'aspects': aspects, 'net_aspects': tuple(cfg.aspects),
            'ref': np.stack([ref[a] for a in aspects], 1), 'inputs': inputs, 'objects': objects, 'regions': regions}


def export_command(*argv: str) -> dict:
    "`mmp_repro export ARGV` through a parser holding only `add_command`'s subcommand; returns its stdout JSON."
    from mmp_repro.export import add_command
    p = argparse.ArgumentParser(prog='mmp_repro')
    add_command(p.add_subparsers(dest='command'))
    args = p.parse_args(['export', *argv])
    with contextlib.redirect_stdout(io.StringIO()) as out: assert args.func(args) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, f'stdout must be one JSON line, got {lines}'
    return json.loads(lines[0])


def run_alone(model: Path, inputs: dict, tmp: Path) -> dict:
    np.savez(tmp / 'inputs.npz', **inputs)
    r = subprocess.run([sys.executable, '-c', RUNNER, str(model), str(model.parent / 'export.json'), str(tmp / 'inputs.npz'),
                        str(tmp / 'outputs.npz')], capture_output=True, text=True, cwd=tmp, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(tmp / 'outputs.npz'))


@pytest.mark.parametrize('fmt', ['onnx', 'torchscript'])
def test_exported_scorer_equals_the_eager_scores(smoke_run, fmt, tmp_path):
    s = smoke_run
    result = export_command('--run-dir', str(s['run']), '--format', fmt, '--quiet')
    model = Path(result['model'])
    assert model.name == {'onnx': 'scorer.onnx', 'torchscript': 'scorer.pt'}[fmt] and model.parent == s['run'] / 'export' / fmt
    assert sorted(p.name for p in model.parent.iterdir()) == sorted([model.name, 'export.json']), 'no temporary file left'
    assert result['aspects'] == list(s['aspects']) == ['F', 'O', 'C', 'BX', 'BY', 'BH', 'BW']
    out = run_alone(model, s['inputs'], tmp_path)
    ref, net = s['ref'], len(s['net_aspects'])
    assert out['losses'].shape == ref.shape == (len(s['objects']), 7) and len(ref) > 100
    # the network's aspects (F, O, C: model_losses) within 1e-5 absolute
    np.testing.assert_allclose(out['losses'][:, :net], ref[:, :net], rtol=0, atol=1e-5)
    # location NLLs: log β + (x - α)² / 2β² grows with the distance from α, and a last-bit difference of α with it,
    # so 1e-5 of the value where it exceeds 1 (an NLL of 9 moved by 9e-6 on this machine)
    loc = slice(net, None)
    assert np.all(np.abs(out['losses'][:, loc] - ref[:, loc]) <= 1e-5 * np.maximum(1, np.abs(ref[:, loc])))
    # a batch of one object: the batch size is free in both formats
    np.testing.assert_allclose(out['losses_1'][0, :net], ref[0, :net], rtol=0, atol=1e-5)
    # z-scores and S: what `score` wrote, per object (objects/) and as regions (scores/, 6 decimals)
    z = s['objects'][[f'z_{a}' for a in s['aspects']]].to_numpy()
    np.testing.assert_allclose(out['z'], z, rtol=0, atol=1e-4)
    np.testing.assert_allclose(out['score'], s['objects'].score.to_numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(out['score'], s['regions'][:, 5], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out['score_1'][0], out['score'][0], rtol=0, atol=1e-4)
    # export_run's own check on random inputs of another batch size passed, and its differences are reported
    assert result['check']['batch'] == 3 and set(result['check']['max_abs_diff']) == {'losses', 'z', 'score'}


def test_export_json_describes_the_model(smoke_run, tmp_path):
    from mmp_repro.flow import flow_parameters
    s = smoke_run
    model = Path(export_command('--run-dir', str(s['run']), '--format', 'torchscript', '--out', str(tmp_path / 'ts'), '--quiet')['model'])
    spec = json.loads((model.parent / 'export.json').read_text())
    assert spec['format'] == 'torchscript' and spec['file'] == model.name
    assert spec['aspect_stats'] == json.loads((s['run'] / 'aspect_stats.json').read_text())
    assert spec['weights']['gamma'] == 0.0 and spec['score_weights'] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert spec['class_names'][:3] == ['person', 'bicycle', 'car'] and len(spec['class_names']) == 80
    assert spec['mask'] == {**spec['mask'], 'patch': 4, 'ratio': 0.5, 'seed': 0}
    # a street run: the street's flow preset, which a user's own extractor must reproduce
    assert spec['crop']['size'] == 16 and spec['flow'] == {'method': 'farneback-small', 'flow_scale': 10.0, 'units': 'px/frame',
                                                            'opencv': flow_parameters('farneback-small')}
    assert spec['flow']['opencv']['winsize'] == 5 and spec['flow']['opencv']['opencv'] == 'calcOpticalFlowFarneback'
    # every input as fed above: its name, dtype and shape (B stands for the batch)
    for entry in spec['inputs']:
        x = s['inputs'][entry['name']]
        assert str(x.dtype) == entry['dtype'] and [len(x), *x.shape[1:]] == [len(x) if d == 'B' else d for d in entry['shape']]
    assert [o['name'] for o in spec['outputs']] == ['losses', 'z', 'score']
    # the alarm threshold follows the run: its alarm.json when there is one, else null
    alarm = s['run'] / 'alarm.json'
    want = json.loads(alarm.read_text()) if alarm.is_file() else None
    assert spec['alarm'] == want
    if want is not None: assert isinstance(want['threshold'], float)
    # the file describes itself: the same JSON (less the check made after writing it) is inside it
    import torch
    extra = {'export.json': ''}
    torch.jit.load(str(model), _extra_files=extra)
    assert json.loads(extra['export.json']) == {k: v for k, v in spec.items() if k != 'check'}


def test_export_without_alarm_file(smoke_run, tmp_path):
    s = smoke_run
    plain = tmp_path / 'run'
    shutil.copytree(s['run'], plain, ignore=shutil.ignore_patterns('alarm.json', 'export'))
    model = Path(export_command('--run-dir', str(plain), '--format', 'torchscript', '--quiet')['model'])
    assert json.loads((model.parent / 'export.json').read_text())['alarm'] is None


def one_line_error(argv: list[str]) -> str:
    "The message `mmp_repro.cli.main` prints for the error that `mmp_repro export ARGV` raises."
    from mmp_repro.cli import error_message
    with pytest.raises((OSError, ValueError, KeyError, RuntimeError)) as e: export_command(*argv)
    msg = error_message('export', e.value)
    assert '\n' not in msg, msg
    return msg


def test_errors_are_one_line(smoke_run, tmp_path):
    s = smoke_run
    assert one_line_error(['--run-dir', str(s['run']), '--format', 'tflite']) == \
        "mmp_repro export: error: --format must be one of ['onnx', 'torchscript'], got 'tflite'"
    untrained = tmp_path / 'untrained'
    shutil.copytree(s['run'], untrained, ignore=shutil.ignore_patterns('model', 'export'))
    msg = one_line_error(['--run-dir', str(untrained), '--format', 'onnx'])
    assert 'last.pt not found' in msg and 'train first' in msg
    unscored = tmp_path / 'unscored'
    shutil.copytree(s['run'], unscored, ignore=shutil.ignore_patterns('aspect_stats.json', 'export'))
    assert 'score the run first' in one_line_error(['--run-dir', str(unscored), '--format', 'torchscript'])
    assert 'config.json not found' in one_line_error(['--run-dir', str(tmp_path / 'nothing')])
    assert not (untrained / 'export').exists() and not (unscored / 'export').exists(), 'a failed export writes nothing'


def test_missing_extra_names_it(smoke_run, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # as if the [export] extra were not installed
    assert "pip install 'mmp_repro[export]'" in one_line_error(['--run-dir', str(smoke_run['run']), '--format', 'onnx'])


def test_console_script_error(smoke_run):
    from mmp_repro.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if 'export' not in sub.choices: pytest.skip('`export` is not registered in mmp_repro.cli.build_parser yet')
    r = subprocess.run([console_script('mmp_repro'), 'export', '--run-dir', str(smoke_run['run']), '--format', 'tflite'],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr.strip().splitlines() == ["mmp_repro export: error: --format must be one of ['onnx', 'torchscript'], got 'tflite'"]
