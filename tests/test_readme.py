"""README.md is the markdown of nbs/index.ipynb, and states exactly the two commands."""
import json
import re

from conftest import ROOT


def index_markdown() -> str:
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text())
    return '\n\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown') + '\n'


def test_readme_matches_index_notebook():
    assert (ROOT / 'README.md').read_text() == index_markdown(), 'README.md is stale: run `make readme`'


def test_readme_states_the_two_commands():
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Two commands', 1)[1].split('\n## ', 1)[0]
    block = re.search(r'```sh\n(.*?)```', section, re.S).group(1)
    commands = [line.split('#')[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ['make reproduce', 'make test']
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(r'^reproduce:', makefile, re.M) and re.search(r'^test:', makefile, re.M)


def test_ci_calls_the_readme_test_command():
    ci = (ROOT / '.ci' / 'run').read_text()
    assert re.search(r'^make test\s*$', ci, re.M)
