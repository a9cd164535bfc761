"""NVDEC decoding through PyAV's CUDA hwaccel: which videos it takes, and its frames turned RGB on
the GPU.

PyPI's PyAV wheels carry an FFmpeg built with NVDEC. `av.open(path, hwaccel=HWAccel("cuda",
allow_software_fallback=False, is_hw_owned=True))` decodes on the GPU's video engines and keeps
each frame there as an NV12 surface, which torch takes through DLPack; so vidclust's own PyAV
loop (seeking, keyframes only, frame counting: `decode._pyav_chunks`) runs unchanged on NVDEC,
and `nv12_to_rgb` resizes and converts on the GPU. `allow_software_fallback=False`: a stream
NVDEC refuses fails, rather than decoding on the CPU inside the GPU worker unseen; vidclust then
decodes it on the CPU itself, with the reason (`decode.sample_frames`).

Which videos go to NVDEC is decided per video (`nvdec_refusal`): the facts of the process
(`NvdecEnvironment`: a CUDA device visible, the driver's libnvcuvid loadable) and of the video's
probe (codec, pixel format, profile). Torch is imported only where frames are converted.
"""
from __future__ import annotations

import ctypes
import logging
import zlib
from dataclasses import dataclass
from typing import Optional

from vidclust.errors import DecodeError

log = logging.getLogger("vidclust")

BACKEND = "pyav-nvdec"  # videos.parquet's `backend` of a video whose frames NVDEC decoded
# what Hopper's (and Ampere's, Ada's) NVDEC decodes, by FFmpeg codec name; not AV1 on Hopper,
# MJPEG is no NVDEC codec
NVDEC_CODECS = ("h264", "hevc", "vp8", "vp9", "mpeg1video", "mpeg2video", "mpeg4", "vc1")
# 8-bit 4:2:0: what NVDEC hands on as NV12 (HEVC 10-bit would come as P010: not converted here)
NVDEC_PIX_FMTS = ("yuv420p", "yuvj420p", "nv12")
NVCUVID = "libnvcuvid.so.1"  # the driver's video decoding library (containers: NVIDIA_DRIVER_CAPABILITIES=video)


@dataclass(frozen=True)
class NvdecEnvironment:
    """What a process offers NVDEC: None where it is there, else why not."""

    cuda: Optional[str] = None  # a CUDA device visible to this process
    nvcuvid: Optional[str] = None  # the driver's libnvcuvid loads


_ENVIRONMENT: Optional[NvdecEnvironment] = None


def environment() -> NvdecEnvironment:
    """This process's NvdecEnvironment, found once (torch's CUDA, a ctypes load of libnvcuvid)."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        _ENVIRONMENT = NvdecEnvironment(cuda=_cuda_missing(), nvcuvid=_nvcuvid_missing())
    return _ENVIRONMENT


def _cuda_missing() -> Optional[str]:
    try:
        import torch

        return None if torch.cuda.is_available() else "no CUDA device visible"
    except Exception as exc:  # torch without CUDA libraries
        return f"no CUDA device visible ({type(exc).__name__})"


def _nvcuvid_missing() -> Optional[str]:
    try:
        ctypes.CDLL(NVCUVID)
        return None
    except OSError:
        return f"no {NVCUVID} (the driver's video decoder; containers need NVIDIA_DRIVER_CAPABILITIES=video)"


def environment_refusal(env: NvdecEnvironment) -> Optional[str]:
    return env.cuda or env.nvcuvid


def codec_refusal(codec: Optional[str], pix_fmt: Optional[str], profile: Optional[str]) -> Optional[str]:
    """Why NVDEC does not take a video of these probe facts, or None."""
    if codec not in NVDEC_CODECS:
        return f"codec {codec or 'unknown'} is not NVDEC-capable"
    if pix_fmt not in NVDEC_PIX_FMTS:
        return f"{codec} {pix_fmt or 'of unknown pixel format'} is not NVDEC-capable (8-bit 4:2:0 only)"
    if codec == "h264" and profile and any(p in profile for p in (" 10", "4:2:2", "4:4:4")):
        return f"h264 profile {profile} is not NVDEC-capable"
    return None


def nvdec_refusal(info, env: NvdecEnvironment) -> Optional[str]:
    """Why the video of probe `info` (decode.VideoInfo) is not decoded on NVDEC in a process of
    `env`, or None where NVDEC takes it. The video's facts first: they say the most about it."""
    return codec_refusal(info.codec_id, info.pix_fmt, info.profile) or environment_refusal(env)


def takes_share(video_id: str, share: float) -> bool:
    """Whether a video is among the `share` of NVDEC-capable videos sent to NVDEC (the rest decode
    on the CPUs at the same time): by a hash of its id, so a re-run sends it the same way."""
    return share >= 1 or (share > 0 and zlib.crc32(video_id.encode()) / 2**32 < share)


# ---------------------------------------------------------------------------------------------
# frames on the GPU

# (Kr, Kb) of the YCbCr matrices by AVColorSpace, as swscale picks them (PyAV's CPU rgb24): BT.709
# where the stream says so, BT.2020, else BT.601 (also for streams that say nothing)
_KR_KB = {1: (0.2126, 0.0722), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)


def nv12_to_rgb(y, uv, size: Optional[int] = None, colorspace: int = 2, full_range: bool = False):
    """NV12 planes -> uint8 RGB (n, S, S, 3) torch tensor on their device.

    `y`: (H, W) or (n, H, W) uint8; `uv`: (H/2, W/2, 2) or (n, H/2, W/2, 2) uint8 (interleaved
    Cb, Cr). With `size`, each plane is resized to size x size first (bilinear with antialias, as
    PyAV's CPU path scales: squashed), so the colour matrix runs on the small frame; without it the
    chroma is repeated to full size, as swscale does. `colorspace` (AVColorSpace) picks the matrix,
    `full_range` the range (JPEG) rather than limited (MPEG) levels."""
    import torch
    import torch.nn.functional as F

    if y.dim() == 2:
        y, uv = y[None], uv[None]
    yf = y[:, None].float()
    cf = uv.permute(0, 3, 1, 2).float()
    if size:
        yf = F.interpolate(yf, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        cf = F.interpolate(cf, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        cf = cf.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[:, :, :yf.shape[2], :yf.shape[3]]
    kr, kb = _KR_KB.get(int(colorspace or 2), _BT601)
    kg = 1.0 - kr - kb
    ys, cs = (1.0, 1.0) if full_range else (255 / 219, 255 / 224)
    luma = (yf[:, 0] - (0.0 if full_range else 16.0)) * ys
    cb, cr = (cf[:, 0] - 128.0) * cs, (cf[:, 1] - 128.0) * cs
    rgb = torch.stack([luma + 2 * (1 - kr) * cr,
                       luma - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr,
                       luma + 2 * (1 - kb) * cb], dim=-1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


class NvdecFrames:
    """What `decode._pyav_chunks` needs to decode on NVDEC: a container opened with the CUDA
    hwaccel, and each decoded frame (an NV12 surface on the GPU) as a size x size RGB tensor there, upright.

    One per process is enough: each video opens its own decoder on the GPU's primary CUDA
    context (the one torch uses: `primary_ctx`), so no CUDA context is made per video."""

    def open(self, path: str):
        """`av.open(path)` decoding its video stream on NVDEC, or an error: no GPU
        (av.error.PermissionError), or a codec without a CUDA hwaccel (which PyAV would decode on
        the CPU unseen). Without libnvcuvid the first decode fails (av.error.InvalidDataError)."""
        import av
        from av.codec.hwaccel import HWAccel

        container = av.open(path, hwaccel=HWAccel(device_type="cuda", allow_software_fallback=False,
                                                  is_hw_owned=True))
        ctx = container.streams.video[0].codec_context if container.streams.video else None
        if ctx is None or not ctx.is_hwaccel:
            container.close()
            raise DecodeError(f"no CUDA hwaccel for {ctx.name if ctx else 'a file without video'}")
        return container

    def rgb(self, frame, size: int):
        """A decoded frame -> uint8 (size, size, 3) on its GPU, turned upright by `frame.rotation`."""
        import torch

        # a CUDA surface of NVDEC's; nv12 in host memory where a test hands one over
        if frame.format.name not in ("cuda", "nv12"):  # never a frame decoded on the CPU unseen
            raise RuntimeError(f"frame not decoded by NVDEC ({frame.format.name})")
        # (H, W) and (H/2, W/2, 2): DLPack views of the planes, strides and all (`from_dlpack(plane)`
        # itself fails: PyAV refuses the `stream=` argument torch passes)
        y = torch.from_dlpack(frame.planes[0].__dlpack__())
        uv = torch.from_dlpack(frame.planes[1].__dlpack__())
        out = nv12_to_rgb(y, uv, size, frame.colorspace, int(frame.color_range) == 2)[0]
        turns = int(round((frame.rotation or 0) / 90)) % 4
        return torch.rot90(out, turns, dims=(0, 1)) if turns else out

    def stack(self, frames: list):
        import torch

        return torch.stack(frames)
