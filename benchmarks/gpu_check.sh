#!/usr/bin/env bash
# The GPU check (issue 9): everything this project cannot test on its CPU-only machines, in one
# run of at most ~8 minutes on one GPU. It writes results/gpu_check.md (and a copy to $OUT when
# the device tool sets it, so the file comes back).
#
#   benchmarks/gpu_check.sh            # on a GPU machine
#   benchmarks/gpu_check.sh --dry-run  # here, on the CPU: same steps, tiny budgets, no CUDA
#
# On a lent machine (see ../shared/docs/gpu.md: Python 3.12, torch with CUDA, pandas 3, no
# network), RecBole and the few packages the image lacks come from .whl/ (Python 3.12 wheels
# downloaded here; carry ".whl" and "dataset"); the package runs from the working tree.
# Prepare here, in the repository root:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl recbole==1.2.1 colorlog==4.7.2 colorama==0.4.4 \
#     texttable pytest iniconfig pluggy pandas==2.3.3 pytz tzdata pyyaml tqdm
#   mkdir -p dataset/ml-1m && cp ../shared/datasets/ml-1m/ml-1m.inter dataset/ml-1m/
#   mkdir -p dataset/citeulike-t && cp ../shared/datasets/citeulike-t/users.dat dataset/citeulike-t/
# (dataset/ and .whl/ are git-ignored: no copy of the data is ever committed).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-python3}
if ! $PY -c "import recbole" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: RecBole is not installed and .whl/ holds no wheels: see the top of $0"; exit 2
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hetcomp-site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/hetcomp-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d /tmp/gpu-check-XXXX)
REPORT=results/gpu_check.md
if [ $DRY = 1 ]; then
  REPORT=$WORK/gpu_check.md
  DEVICE=cpu; GPU=False; EPOCHS=1; TEST_DEVICE=cpu; QUICK=--quick
else
  DEVICE=cuda; GPU=True; EPOCHS=3; TEST_DEVICE=cuda; QUICK=
fi
STATUS=0
md() { echo "$*" >> "$REPORT.tmp"; }
step() {  # step NAME TIMEOUT COMMAND...: run, record status, time and the output's tail
  local name=$1 limit=$2; shift 2
  local start end rc
  start=$(date +%s)
  timeout "$limit" "$@" > "$WORK/step.log" 2>&1
  rc=$?
  end=$(date +%s)
  [ $rc -ne 0 ] && STATUS=1
  md "## $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((end - start)) s"
  md ""; md '```'; tail -n "${TAIL:-15}" "$WORK/step.log" | cut -c1-300 >> "$REPORT.tmp"; md '```'; md ""
  echo "[gpu_check] $name: exit $rc, $((end - start)) s"
}

: > "$REPORT.tmp"
md "# GPU check$([ $DRY = 1 ] && echo ' (dry run on the CPU)')"
md ""
md "$(date -u +%Y-%m-%dT%H:%M:%SZ); $($PY -c 'import torch, platform; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}, device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' 2>&1); $(nproc) CPU cores; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
md ""
COMMON="--state=INFO --show_progress=False --use_gpu=$GPU --trajectory_dir=$WORK/traj --checkpoint_dir=$WORK/saved"

# 1. The whole test suite with its models on the device (HETCOMP_TEST_DEVICE).
SUBSET=()
[ $DRY = 1 ] && SUBSET=(-k "test_device or test_recording")  # the dry run only proves the step
TAIL=25 step "test suite (HETCOMP_TEST_DEVICE=$TEST_DEVICE)" 240 \
  env HETCOMP_TEST_DEVICE=$TEST_DEVICE $PY -m pytest -q -p no:cacheprovider tests "${SUBSET[@]}"

# 2. Every teacher (EASE too: it scores on the CPU beside a CUDA run) with recording on ml-100k.
for model in BPR CML NeuMF LightGCN MultiVAE ItemVAE EASE; do
  TAIL=3 step "teacher $model, $EPOCHS epochs, recorded (ml-100k)" 120 \
    $PY run_hetcomp.py --model=$model --dataset=ml-100k --epochs=$EPOCHS --eval_step=1 $COMMON
done

# 3. The pipeline on the device: both losses (switch_share 0.01 switches at the first
#    knowledge step), knowledge steps, the report.
TAIL=20 step "pipeline on ml-100k (both losses, knowledge steps, RRD and DCD, report)" 240 \
  $PY run_hetcomp.py --model=HetCompStudent --dataset=ml-100k $COMMON \
  "--teacher_config={'default': {'epochs': $EPOCHS}}" --teachers="[BPR,LightGCN,EASE]" \
  --epochs=$((EPOCHS * 10)) --kc_period=$EPOCHS --eval_step=$EPOCHS --switch_share=0.01 \
  --baseline="~" --distillation_baselines="[RRD,DCD]"

# 4. Student training speed on CiteULike (synthetic teachers), then ml-1m: sync counts, peak
#    memory, CPU-vs-CUDA agreement of targets and snapshot choices.
if [ -f dataset/citeulike-t/users.dat ]; then
  TAIL=25 step "bench_student.py --device $DEVICE (CiteULike)" 180 \
    $PY benchmarks/bench_student.py --device $DEVICE --quick --repeats 1 \
    --users-dat dataset/citeulike-t/users.dat
else
  md "## bench_student.py: skipped (no dataset/citeulike-t/users.dat)"; md ""
fi
TAIL=12 step "gpu_check.py: student epochs, host syncs, peak memory, CPU-vs-device agreement" \
  180 $PY benchmarks/gpu_check.py --device $DEVICE --data-path dataset $QUICK

# 5. RecBole's loader against vectorised_loader on the device (where the data path dominates).
TAIL=10 step "profile_epoch.py: RecBole's loader vs vectorised_loader, BPR and CML (ml-100k)" 120 \
  $PY benchmarks/profile_epoch.py --dataset ml-100k --models BPR CML --compare-loaders \
  --epochs 2 --use_gpu=$GPU --trajectory_dir=$WORK/traj

md "Overall: $([ $STATUS -eq 0 ] && echo 'every step passed' || echo 'some steps FAILED (see above)')."
mv "$REPORT.tmp" "$REPORT"
[ -n "${OUT:-}" ] && cp "$REPORT" "$OUT/"
echo "[gpu_check] wrote $REPORT"
exit $STATUS
