from .compat import apply_all
from .setup_env import register_all_modules

__all__ = ['apply_all', 'register_all_modules']
