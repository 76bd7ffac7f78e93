"""mmengine's Config formats itself with yapf on every read of ``pretty_text``: format once."""
import copy

from mmengine.config import Config


class CachedTextConfig(Config):
    """A Config whose ``pretty_text`` is formatted once.

    mmengine formats the whole config with yapf (~2 s for ours) when it logs the environment,
    dumps the config and at every checkpoint save; the runner never changes its config.
    """

    @property
    def pretty_text(self) -> str:
        text = self.__dict__.get('_pretty_text_cache')
        if text is None:
            text = Config.pretty_text.fget(self)
            object.__setattr__(self, '_pretty_text_cache', text)
        return text


def cache_pretty_text(cfg):
    """A copy of ``cfg`` that formats its ``pretty_text`` once (:class:`CachedTextConfig`)."""
    if isinstance(cfg, Config) and not isinstance(cfg, CachedTextConfig):
        cfg = copy.deepcopy(cfg)
        object.__setattr__(cfg, '__class__', CachedTextConfig)
    return cfg
