#!/usr/bin/env bash
# Prepare benchmarks/gpu_check.sh here (where the package registry is reachable), so that the
# one run on a lent GPU machine (no network, Python 3.12, torch with CUDA, pandas 3: see
# ../shared/docs/gpu.md) finds everything it needs and spends its minutes on the GPU.
#
#   benchmarks/prepare_gpu_check.sh            # wheels into .whl/, data into dataset/, size check
#   benchmarks/prepare_gpu_check.sh --dry-run  # the same, then gpu_check.sh --dry-run (the GPU
#                                              # run's settings on the simulated accelerator)
#
# Then, with the device tool: run `bash benchmarks/gpu_check.sh` with carry [".whl", "dataset"]
# and timeout_s 600 (the script keeps its steps within 510 s, plus the wheels' install), commit the
# results/gpu_check.md it writes, and give the machine back.
#
# .whl/ and dataset/ are git-ignored: no copy of the data is ever committed.
#
# Rehearsal here (what found that pytest needs pygments): a venv holding only what the image
# holds (torch==2.13.0 numpy scipy "pandas>=3" scikit-learn tensorboard), a copy of the
# checkout, then in that copy `HETCOMP_WHEEL_PYTHON=3.11 PYTHON=<venv>/bin/python
# benchmarks/prepare_gpu_check.sh --dry-run`.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${HETCOMP_SHARED_DATASETS:-../shared/datasets}
PY=${PYTHON:-python3}
WHEEL_PY=${HETCOMP_WHEEL_PYTHON:-3.12}  # the lent image's Python (another one to rehearse here)

for path in .whl dataset; do
  if ! git check-ignore -q "$path/"; then
    echo "error: $path/ is not git-ignored here; add /$path/ to .gitignore first"; exit 2
  fi
done
for file in "$SHARED/ml-1m/ml-1m.inter" "$SHARED/citeulike-t/users.dat"; do
  [ -f "$file" ] || { echo "error: $file not found; set HETCOMP_SHARED_DATASETS"; exit 2; }
done

# Wheels (Python 3.12 by default) of what the lent image lacks. It has torch, numpy, scipy, pandas 3,
# scikit-learn and tensorboard; RecBole 1.2.1 needs pandas < 3 (its in-place fillna is a no-op
# under pandas 3), the reports need matplotlib, the tests pytest and, for the wheel-install
# test, setuptools and wheel. --no-deps throughout: every dependency is named here, so nothing
# can pull a second torch or numpy.
WHEELS=(recbole==1.2.1 colorlog==4.7.2 colorama==0.4.4 texttable pyyaml tqdm
        pandas==2.3.3 pytz tzdata python-dateutil six
        matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing packaging
        pytest iniconfig pluggy pygments setuptools wheel)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$WHEEL_PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"

mkdir -p dataset/ml-1m dataset/citeulike-t
# ml-1m travels gzipped (2.7 MB instead of 9.5: the carry limit is shared with the growing
# tree); gpu_check.sh unpacks it outside the tree, so a dry run here never re-grows the carry.
rm -f dataset/ml-1m/ml-1m.inter
gzip -c "$SHARED/ml-1m/ml-1m.inter" > dataset/ml-1m/ml-1m.inter.gz
cp "$SHARED/citeulike-t/users.dat" dataset/citeulike-t/

# The device tool carries at most 64 MiB with the working tree: stop here, not there.
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -n 1 | cut -f1)
carry_kib=$(du -sk .whl dataset | awk '{s += $1} END {print s}')
total_mib=$(( (tree_kib + carry_kib) / 1024 ))
echo "[prepare] $(ls .whl | wc -l) wheels; working tree + .whl + dataset = $total_mib MiB (limit 64)"
if [ "$total_mib" -ge 62 ]; then
  echo "error: $total_mib MiB is too close to the device tool's 64 MiB; remove stale files from" \
       ".whl/ or dataset/ (e.g. older wheel versions) and rerun"; exit 2
fi

if [ "${1:-}" = "--dry-run" ]; then
  bash benchmarks/gpu_check.sh --dry-run
fi
echo "[prepare] ready: run 'bash benchmarks/gpu_check.sh' on the device with carry [\".whl\", \"dataset\"]"
