"""vidclust: group a corpus of videos into clusters of similar content and describe each one.

`import vidclust` is light: the functions below load their modules (and Ray, torch, ...) when
first used.

    vidclust.run(source, out, **settings)      every stage; see vidclust.api
    vidclust.embed / cluster / describe / report   one stage each
    vidclust.assign(out, new_source)           new videos to the saved clusters
    vidclust.stats(source, out=None)           durations, frame rates, sizes, codecs of SOURCE
    vidclust.FrameEncoder                      a Ray Data callable class (CLIP on frames)
    vidclust.VideoClusterer                    scikit-learn style clustering of plain arrays
    vidclust.near_duplicates(vectors, threshold)  one group id per row (-1: none)
"""

import sys
import types

__version__ = "0.1.0"

# vidclust.embed, .cluster, .describe, .report and .stats are also the stages' modules
# (vidclust/embed.py, ...), and vidclust.near_duplicates is a module too: such a module, once
# imported, is made callable (calling the function of vidclust.api, or the module's function of
# its own name), so `vidclust.embed(src, out)` and `from vidclust.embed import run_embed` both
# keep working.
_STAGE_MODULES = ("embed", "cluster", "describe", "report", "stats")
_CALLABLE_MODULES = (*_STAGE_MODULES, "near_duplicates")

_LAZY = {
    "run": "vidclust.api", "assign": "vidclust.api", "make_config": "vidclust.api",
    "FrameEncoder": "vidclust.encoder",
    "VideoClusterer": "vidclust.video_clusterer",
}

__all__ = ["__version__", *_CALLABLE_MODULES, *_LAZY]


class _CallableModule(types.ModuleType):
    """A module that is also a function: a stage's calls vidclust.api.<stage>; near_duplicates
    calls its function of the same name."""

    def __call__(self, *args, **kwargs):
        name = self.__name__.rsplit(".", 1)[1]
        if name in _STAGE_MODULES:
            from vidclust import api

            return getattr(api, name)(*args, **kwargs)
        return getattr(self, name)(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):  # the import system sets a submodule here once loaded
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    import importlib

    if name in _CALLABLE_MODULES:  # not imported yet: importing sets (and converts) the attribute
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vidclust' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_CALLABLE_MODULES))
