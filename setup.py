"""mmllava: an OpenMMLab-style toolbox for LLaVA."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

# What the zoo and the tools need beside the package (mim-style, as mmpretrain's setup.py):
# copied into mmllava/.mim for a wheel or a plain install (an editable one reads the checkout).
MIM_FILES = ('configs', 'tools', 'demo', 'resources', 'model-index.yml')


def read_requirements(name: str) -> list:
    """Requirement lines of requirements/<name>.txt, comments and blanks dropped."""
    path = osp.join(osp.dirname(__file__), 'requirements', f'{name}.txt')
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(('#', '-'))]


def read_version() -> str:
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmllava', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension() -> None:
    """Copy ``MIM_FILES`` into ``mmllava/.mim`` for a wheel, an sdist or ``pip install .``, so
    that ``mmllava.apis.list_models`` and ``get_model`` find their configs and shipped weights
    without the checkout."""
    if not {'bdist_wheel', 'build', 'build_py', 'install', 'sdist'} & set(sys.argv[1:]):
        return  # metadata only, or an editable install: that reads the repository itself
    here = osp.dirname(osp.abspath(__file__))
    mim = osp.join(here, 'mmllava', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(here, name), osp.join(mim, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


add_mim_extension()

setup(
    name='mmllava',
    version=read_version(),
    description='OpenMMLab-style toolbox for LLaVA, finetuned for human action understanding',
    packages=find_packages(exclude=('configs', 'tools', 'demo', 'tests', 'tests.*')),
    include_package_data=True,
    package_data={'mmllava': ['.mim/**/*', '.mim/*']},
    python_requires='>=3.11',
    install_requires=read_requirements('runtime'),
    extras_require=dict(web=read_requirements('web'), serve=read_requirements('serve'),
                        qlora=read_requirements('qlora'),
                        deepspeed=read_requirements('deepspeed'),
                        tests=read_requirements('tests') + read_requirements('web')
                        + read_requirements('serve')),
    license='Apache License 2.0',
)
