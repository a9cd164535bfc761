"""vidclust: group a corpus of videos into clusters of similar content and describe each one.

`import vidclust` is light: the functions below load their modules (and Ray, torch, ...) when
first used.

    vidclust.run(source, out, **settings)      every stage; see vidclust.api
    vidclust.embed / cluster / describe / report
    vidclust.FrameEncoder                      a Ray Data callable class (CLIP on frames)
"""

import sys
import types

__version__ = "0.1.0"

# vidclust.embed, .cluster, .describe and .report are also the stages' modules (vidclust/embed.py,
# ...): such a module, once imported, is made callable, calling the function of vidclust.api, so
# `vidclust.embed(src, out)` and `from vidclust.embed import run_embed` both keep working.
_STAGE_MODULES = ("embed", "cluster", "describe", "report")

_LAZY = {
    "run": "vidclust.api", "make_config": "vidclust.api",
    "FrameEncoder": "vidclust.encoder",
    "VideoClusterer": "vidclust.clusterer",
    "near_duplicates": "vidclust.near_duplicates",
}

__all__ = ["__version__", *_STAGE_MODULES, *_LAZY]


class _StageModule(types.ModuleType):
    """A stage's module that is also its API function: calling it calls vidclust.api.<stage>."""

    def __call__(self, *args, **kwargs):
        from vidclust import api

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):  # the import system sets a submodule here once loaded
        if name in _STAGE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _StageModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _STAGE_MODULES:  # not imported yet: importing sets (and converts) the attribute
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vidclust' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
