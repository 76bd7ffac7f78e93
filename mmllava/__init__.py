"""mmllava: an OpenMMLab-style toolbox for LLaVA."""
from .utils.compat import apply_all as _apply_compat_shims
from .version import __version__

_apply_compat_shims()

__all__ = ['__version__']
