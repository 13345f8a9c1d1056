"""Packaging driven by settings.ini (the nbdev 2 layout)."""
import json
import re
from configparser import ConfigParser
from pathlib import Path

import setuptools
from setuptools.command.build_py import build_py

assert int(setuptools.__version__.split('.')[0]) >= 36, 'please upgrade setuptools'

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = ('version description keywords author author_email license status min_python '
            'audience language lib_name user').split()
missing = [k for k in expected if k not in cfg]
if missing:
    raise SystemExit(f'settings.ini is missing: {missing}')

licenses = {'apache2': 'Apache-2.0'}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
lic = licenses.get(cfg['license'].lower(), cfg['license'])
min_python = cfg['min_python']
pythons = [v for v in ('3.11', '3.12', '3.13', '3.14') if v >= min_python]

def split_reqs(key: str) -> list[str]:
    return cfg.get(key, '').split()

def is_export_cell(cell: dict) -> bool:
    return cell['cell_type'] == 'code' and re.search(r'^import nbdev\b', ''.join(cell['source']), re.M) is not None

class BuildWithNotebooks(build_py):
    """Also copy the experiment notebooks into the package (mmp_repro/notebooks), so that an installed wheel can run
    `mmp_repro reproduce` without a clone. The list is the registry in mmp_repro/paper.py."""
    def run(self):
        super().run()
        if self.editable_mode: return  # an editable install reads nbs/ of its checkout
        names = re.findall(r"Experiment\('\w+', '([\w.-]+\.ipynb)'", Path('mmp_repro/paper.py').read_text(encoding='utf-8'))
        if not names: raise SystemExit('setup.py: no experiment notebooks found in mmp_repro/paper.py')
        dest = Path(self.build_lib) / cfg['lib_path'] / 'notebooks'
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:  # without the closing nbdev export cell, which needs the checkout (paper.notebook_hash skips it too)
            nb = json.loads((Path(cfg['nbs_path']) / name).read_text(encoding='utf-8'))
            nb['cells'] = [c for c in nb['cells'] if not is_export_cell(c)]
            (dest / name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')

extras = {
    'dev': split_reqs('dev_requirements'),
    'docs': split_reqs('docs_requirements'),  # make docs; selenium for tests/test_docs_site.py
    # the paper's detector stack; see README "Optional: the paper's YOLOv3 through MMDetection"
    'mmdet': ['mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0'],
    'export': split_reqs('export_requirements'),  # `mmp_repro export --format onnx` and its check through onnxruntime
}

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    license=lic,
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ] + [f'Programming Language :: Python :: {v}' for v in pythons],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['mmp_repro', 'mmp_repro.*']),
    include_package_data=True,
    install_requires=split_reqs('requirements'),
    extras_require=extras,
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    cmdclass={'build_py': BuildWithNotebooks},
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
    },
    author=cfg['author'],
    author_email=cfg['author_email'],
    description=cfg['description'],
    keywords=cfg['keywords'],
)
