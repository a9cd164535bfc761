"""The models, in torch and never Ray: CLIP's image encoder (FrameEncoder), the summariser, the
zero-shot labeller, weights found offline first, devices and precision. Imports no half."""
