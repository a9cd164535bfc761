"""vidclust: group a corpus of videos into clusters of similar content and describe each one.

`import vidclust` is light: the names below load their modules (and Ray, torch, ...) when first
used.

    vidclust.run(source, out, **settings)      every stage; see vidclust.api
    vidclust.embed / cluster / describe / report   one stage each
    vidclust.assign(out, new_source)           new videos to the saved clusters
    vidclust.stats(source, out=None)           durations, frame rates, sizes, codecs of SOURCE
    vidclust.FrameEncoder                      a Ray Data callable class (CLIP on frames)
    vidclust.VideoClusterer                    scikit-learn style clustering of plain arrays
    vidclust.near_duplicates(vectors, threshold)  one group id per row (-1: none)

The package's folders (docs/architecture.md): runtime/ (the only Ray code), store/ (SOURCE in, OUT
out), models/ (torch, never Ray), and one per half of the job: embedding/, clustering/,
descriptions/, reporting/, statistics/.
"""

__version__ = "0.1.0"

_LAZY = {
    "run": "vidclust.api", "embed": "vidclust.api", "cluster": "vidclust.api",
    "describe": "vidclust.api", "report": "vidclust.api", "assign": "vidclust.api",
    "stats": "vidclust.api", "make_config": "vidclust.api",
    "FrameEncoder": "vidclust.models.encoder",
    "VideoClusterer": "vidclust.clustering.video_clusterer",
    "near_duplicates": "vidclust.clustering.near_duplicates",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vidclust' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
