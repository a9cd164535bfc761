"""vidclust: group a corpus of videos into clusters of similar content and describe each one."""

__version__ = "0.1.0"
