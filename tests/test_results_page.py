"""The committed results page tells the truth about which code produced each section; reproduce is all or nothing."""
import json

import pytest

from conftest import ROOT
from mmp_repro import paper
from mmp_repro.paper import EXPERIMENTS, load_results, render_results_page

FIGURES = ROOT / 'figures'


def test_committed_page_marks_are_current():
    # the page's "produced by the code now in this checkout" marks are recomputed and must match what is committed;
    # after a code change, `mmp_repro reproduce --page-only` (or a new reproduce) brings the page up to date
    results = load_results(FIGURES)
    assert results['experiments'], 'figures/results.json has no sections'
    expected = render_results_page(FIGURES, results)
    assert (FIGURES / 'RESULTS.md').read_text() == expected, 'RESULTS.md is out of date: run `mmp_repro reproduce --page-only`'


def test_every_committed_section_records_its_provenance():
    for name, rec in load_results(FIGURES)['experiments'].items():
        prov = rec.get('provenance') or {}
        assert {'source_sha256', 'notebook_sha256', 'git_commit', 'git_dirty', 'version'} <= set(prov), name
        assert prov['git_dirty'] is False, f'{name} was produced from a checkout with uncommitted changes'


def test_a_failing_experiment_leaves_figures_untouched(tmp_path, monkeypatch):
    figs, out = tmp_path / 'figures', tmp_path / 'runs'
    figs.mkdir()
    (figs / 'results.json').write_text(json.dumps({'experiments': {}}))

    def fake(exp, scale, out_root, seed=0, nbs=None, progress_bar=True):
        if exp.name == 'street': raise RuntimeError('boom')
        d = out_root / exp.name; d.mkdir(parents=True, exist_ok=True)
        (d / f'{exp.name}.md').write_text('| a |\n|---|\n| 1 |\n')
        return d

    monkeypatch.setattr(paper, 'run_experiment', fake)
    with pytest.raises(RuntimeError, match='figures/ left unchanged'):
        paper.reproduce('smoke', only=['roads', 'street'], out_root=out, figures_dir=figs, allow_dirty=True)
    assert sorted(p.name for p in figs.iterdir()) == ['results.json'], 'nothing gathered, no page written'
    assert (out / 'roads' / 'roads.md').exists(), 'the executed outputs stay for a look'


def test_each_section_keeps_the_notebook_that_produced_it():
    # figures/notebooks/<nb> is papermill's output of the same reproduce run as the section's tables and figures
    results = load_results(FIGURES)
    page = (FIGURES / 'RESULTS.md').read_text()
    for name, rec in results['experiments'].items():
        # one notebook may run on two datasets (17c: street and plaza): each run keeps its own copy
        assert rec.get('executed_notebook') == f'notebooks/{EXPERIMENTS[name].kept_name}', name
        assert EXPERIMENTS[name].notebook == rec['notebook'], name
        path = FIGURES / rec['executed_notebook']
        assert path.is_file(), f'{path} missing: regenerate with `mmp_repro reproduce --only {name}`'
        nb = json.loads(path.read_text())
        meta = nb['metadata']['mmp_repro']
        assert (meta['experiment'], meta['scale'], meta['seed']) == (name, rec['config']['scale'], rec['config']['seed']), name
        assert meta['provenance'] == rec['provenance'], f'{path} is from another run than the section {name}'
        code = [c for c in nb['cells'] if c['cell_type'] == 'code']
        injected = [c for c in code if 'injected-parameters' in c['metadata'].get('tags', [])]
        assert len(injected) == 1 and f'scale = "{meta["scale"]}"' in ''.join(injected[0]['source']), name
        assert not [o for c in code for o in c.get('outputs', []) if o['output_type'] == 'error'], name
        assert all(c['execution_count'] is None for c in code), f'{path} is not cleaned'
        figures = sum('image/png' in o.get('data', {}) for c in code for o in c.get('outputs', []))
        drawn = [f for f in rec['files'] if f.endswith('.png')]
        assert figures >= len(drawn), f'{path} shows {figures} figures inline but the section has {len(drawn)}'
        assert f'({rec["executed_notebook"]})' in page, f'the results page does not link {name} to its notebook'


def test_a_successful_reproduce_keeps_each_executed_notebook(tmp_path, monkeypatch):
    figs, out = tmp_path / 'figures', tmp_path / 'runs'

    def fake(exp, scale, out_root, seed=0, nbs=None, progress_bar=True):
        d = out_root / exp.name; d.mkdir(parents=True, exist_ok=True)
        (d / f'{exp.name}.md').write_text('| a |\n|---|\n| 1 |\n')
        cell = {'cell_type': 'code', 'execution_count': 7, 'metadata': {'tags': ['injected-parameters'], 'papermill': {}},
                'source': f'scale = "{scale}"', 'outputs': [{'output_type': 'stream', 'name': 'stderr', 'text': '\r 50%'},
                                                           {'output_type': 'stream', 'name': 'stderr', 'text': '\r100%\n'}]}
        (d / exp.kept_name).write_text(json.dumps({'cells': [cell], 'metadata': {'papermill': {'duration': 1}}, 'nbformat': 4,
                                                    'nbformat_minor': 5}))
        return d

    monkeypatch.setattr(paper, 'run_experiment', fake)
    paper.reproduce('smoke', only=['roads', 'street', 'ablations', 'plaza_ablations'], out_root=out, figures_dir=figs, allow_dirty=True)
    page = (figs / 'RESULTS.md').read_text()
    # the ablations notebook runs on the street and on the plaza: two kept copies, each linked from its own section
    for name, nb_name in (('roads', '03_roads.ipynb'), ('street', '07_street.ipynb'), ('ablations', '17c_street_ablations.ipynb'),
                          ('plaza_ablations', '17c_street_ablations-plaza.ipynb')):
        kept = json.loads((figs / 'notebooks' / nb_name).read_text())
        rec = load_results(figs)['experiments'][name]
        assert rec['executed_notebook'] == f'notebooks/{nb_name}'
        assert kept['metadata']['mmp_repro']['provenance'] == rec['provenance']
        assert kept['cells'][0]['execution_count'] is None and kept['cells'][0]['metadata'] == {'tags': ['injected-parameters']}
        assert [o['text'] for o in kept['cells'][0]['outputs']] == [['100%\n']], 'one progress bar, at its last state'
        assert f'(notebooks/{nb_name})' in page
