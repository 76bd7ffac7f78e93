"""mmllava: an OpenMMLab-style toolbox for LLaVA."""
import os.path as osp

from setuptools import find_packages, setup


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


setup(
    name='mmllava',
    version=read_version(),
    description='OpenMMLab-style toolbox for LLaVA, finetuned for human action understanding',
    packages=find_packages(exclude=('configs', 'tools', 'demo', 'tests', 'tests.*')),
    include_package_data=True,
    package_data={'mmllava.datasets': ['mocap_actions_joints.npz']},
    python_requires='>=3.11',
    install_requires=read_requirements('runtime'),
    extras_require=dict(web=read_requirements('web'),
                        tests=read_requirements('tests') + read_requirements('web')),
    license='Apache License 2.0',
)
