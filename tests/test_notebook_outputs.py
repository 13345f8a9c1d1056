"""The lesson notebooks are committed with the outputs that today's code produces."""
import copy
import importlib.util
import json
import re

import pytest

from conftest import ROOT, SHARED

spec = importlib.util.spec_from_file_location('notebook_outputs', ROOT / 'scripts' / 'notebook_outputs.py')
nbo = importlib.util.module_from_spec(spec)

spec.loader.exec_module(nbo)
LESSONS = nbo.lesson_notebooks()
DRAWS = re.compile(r'plt\.|\.imshow\(|subplots\(')


def _code(nb): return [c for c in nb['cells'] if c['cell_type'] == 'code']
def _load(p): return json.loads(p.read_text(encoding='utf-8'))


def test_the_lessons_are_the_notebooks_that_are_not_experiments():
    from mmp_repro.paper import EXPERIMENTS
    names = {p.name for p in LESSONS}
    assert len(names) >= 20 and '01_losses.ipynb' in names and 'index.ipynb' not in names
    assert not names & {e.notebook for e in EXPERIMENTS.values()}


@pytest.mark.parametrize('path', LESSONS, ids=lambda p: p.stem)
def test_lesson_notebook_has_its_outputs(path):
    import nbformat
    nbformat.validate(nbformat.reads(path.read_text(encoding='utf-8'), as_version=4))  # e.g. no outputs on markdown cells
    nb = _load(path)
    code = _code(nb)
    assert any(c.get('outputs') for c in code), f'{path.name} has no saved output: run `make outputs`'
    assert all(c['execution_count'] is None for c in code), f'{path.name} is not cleaned: run `make outputs`'
    if any(DRAWS.search(''.join(c['source'])) for c in code if not ''.join(c['source']).startswith('#| export')):
        figures = sum(any(k.startswith('image/') for k in o.get('data', {})) for c in code for o in c.get('outputs', []))
        assert figures >= 1, f'{path.name} draws a figure but none is saved: run `make outputs`'


def test_differences_finds_what_changed():
    nb = _load(ROOT / 'nbs' / '01_losses.ipynb')
    i = next(i for i, c in enumerate(_code(nb)) if any(o['output_type'] == 'execute_result' for o in c.get('outputs', [])))
    assert nbo.differences(nb, copy.deepcopy(nb)) == []
    changed = copy.deepcopy(nb)
    out = next(o for o in _code(changed)[i]['outputs'] if o['output_type'] == 'execute_result')
    # numbers agree within a relative 5e-3 (CPUs differ in float arithmetic); beyond it, or in the words, they differ
    out['data']['text/plain'] = 'tensor([[0.0000,  0.5010]])'
    assert nbo.differences(nb, changed) == [], 'a last-digit change and other column padding are the same output'
    out['data']['text/plain'] = 'tensor([[0.0000, 0.5100]])'
    assert len(nbo.differences(nb, changed)) == 1 and f'code cell {i}' in nbo.differences(nb, changed)[0]
    out['data']['text/plain'] = 'array([[0.0000, 0.5000]])'
    assert len(nbo.differences(nb, changed)) == 1, 'the words differ'
    out['data']['text/plain'] = 'tensor([[0.0000, 0.5100]])'
    volatile = copy.deepcopy(changed)
    for d in (nb, volatile): _code(d)[i]['source'] = '#| volatile\n' + ''.join(_code(d)[i]['source'])
    assert nbo.differences(nb, volatile) == [], 'a volatile cell is run, not compared'
    raised = copy.deepcopy(nb)
    _code(raised)[i]['outputs'] = [{'output_type': 'error', 'ename': 'ValueError', 'evalue': 'bad', 'traceback': []}]
    assert 'raised ValueError' in nbo.differences(nb, raised)[0]
    edited = copy.deepcopy(nb); _code(edited)[0]['source'] = '# edited'
    assert nbo.differences(nb, edited) == ['the code cells differ']


def test_committed_outputs_match_a_fresh_run():
    # every lesson notebook is executed again in a fresh kernel; tables and printed text must equal the committed ones,
    # numbers within a relative 5e-3 (cells marked `#| volatile`, such as timings, run but are not compared)
    if not SHARED.is_dir():  # the committed outputs show the cached data (e.g. vtest.avi); without it those cells print other things
        pytest.skip(f'{SHARED} (the offline data cache the outputs were made with) is absent')
    bad = {n: d for n, d in nbo.check(LESSONS).items() if d}
    assert not bad, 'run `make outputs` and commit the notebooks:\n' + '\n'.join(f'{n}: {d}' for n, d in bad.items())
