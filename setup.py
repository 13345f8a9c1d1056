"""Packaging driven by settings.ini (the nbdev 2 layout)."""
from configparser import ConfigParser
import setuptools

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

extras = {
    'dev': split_reqs('dev_requirements'),
    'docs': split_reqs('docs_requirements'),  # make docs; selenium for tests/test_docs_site.py
    # the paper's detector stack; see README "Optional: the paper's YOLOv3 through MMDetection"
    'mmdet': ['mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0'],
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
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
    },
    author=cfg['author'],
    author_email=cfg['author_email'],
    description=cfg['description'],
    keywords=cfg['keywords'],
)
