#!/usr/bin/env bash
# The GPU check (issue 9): everything this project cannot test on its CPU-only machines, in one
# run of at most 8.5 minutes on one GPU (GPU_CHECK_BUDGET_S, default 510 s). It writes
# results/gpu_check.md (and copies it to $OUT, step by step, when the device tool sets it, so
# the file comes back even from a run cut short).
#
#   benchmarks/gpu_check.sh            # on a GPU machine
#   benchmarks/gpu_check.sh --dry-run  # here: the same steps, configured for CUDA, with tiny
#                                      # budgets on the simulated accelerator
#                                      # (tests/sim_accelerator.py: CUDA's placement rules
#                                      # on the CPU, so a tensor left on the CPU fails here)
#
# On a lent machine (see ../shared/docs/gpu.md: Python 3.12, torch with CUDA, pandas 3, no
# network), RecBole and what else the image lacks come from .whl/ (Python 3.12 wheels); the
# package runs from the working tree. Prepare here first, in the repository root:
#   benchmarks/prepare_gpu_check.sh --dry-run   # wheels, data, carry-size check, this dry run
# then run `bash benchmarks/gpu_check.sh` on the device with carry [".whl", "dataset"].
# (dataset/ and .whl/ are git-ignored: no copy of the data is ever committed.)
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-python3}
if ! $PY -c "import recbole" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: RecBole is not installed and .whl/ holds no wheels: run benchmarks/prepare_gpu_check.sh here first"; exit 2
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hetcomp-site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/hetcomp-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d /tmp/gpu-check-XXXX)
DATA=dataset  # ml-1m comes gzipped (prepare_gpu_check.sh): unpacked into $WORK, not the tree
if [ ! -f dataset/ml-1m/ml-1m.inter ] && [ -f dataset/ml-1m/ml-1m.inter.gz ]; then
  DATA=$WORK/data
  mkdir -p "$DATA/ml-1m" && gunzip -c dataset/ml-1m/ml-1m.inter.gz > "$DATA/ml-1m/ml-1m.inter" || exit 2
fi
REPORT=results/gpu_check.md
if [ $DRY = 1 ]; then
  REPORT=$WORK/gpu_check.md
  RUN="$PY tests/sim_accelerator.py"; EPOCHS=1; TEST_DEVICE=sim; QUICK=--quick
else
  RUN=$PY; EPOCHS=3; TEST_DEVICE=cuda; QUICK=
fi
DEVICE=cuda; GPU=True
STATUS=0
# The whole check stays within BUDGET seconds (the device tool's time is counted, and only what
# is under $OUT comes back): a step gets at most what is left, a step with nothing left is
# marked skipped, and the report so far is copied to $OUT after every step.
BUDGET=${GPU_CHECK_BUDGET_S:-$([ $DRY = 1 ] && echo 1800 || echo 510)}
T0=$(date +%s)
md() { echo "$*" >> "$REPORT.tmp"; }
publish() { if [ -n "${OUT:-}" ]; then cp "$REPORT.tmp" "$OUT/gpu_check.partial.md"; fi; }
step() {  # step NAME TIMEOUT COMMAND...: run, record status, time and the output's tail
  local name=$1 limit=$2; shift 2
  local start end rc left
  start=$(date +%s)
  left=$((BUDGET - (start - T0)))
  if [ $left -lt 15 ]; then
    STATUS=1
    md "## $name: SKIPPED (the check's $BUDGET s budget is spent)"; md ""
    echo "[gpu_check] $name: skipped, budget spent"; publish; return
  fi
  [ $DRY = 1 ] && limit=$((limit * 3))  # a shared 2-core CPU, not the GPU the limits are for
  [ "$limit" -gt $left ] && limit=$left
  timeout -s INT -k 15 "$limit" "$@" > "$WORK/step.log" 2>&1  # SIGINT: Python says where it was
  rc=$?
  end=$(date +%s)
  [ $rc -ne 0 ] && STATUS=1
  md "## $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc$([ $rc -eq 124 ] && echo ", timed out after $limit s"))") in $((end - start)) s"
  md ""; md '```'; tail -n "${TAIL:-15}" "$WORK/step.log" | cut -c1-300 >> "$REPORT.tmp"; md '```'; md ""
  echo "[gpu_check] $name: exit $rc, $((end - start)) s"
  publish
}

: > "$REPORT.tmp"
md "# GPU check$([ $DRY = 1 ] && echo ' (dry run on the simulated accelerator, CPU)')"
md ""
md "$(date -u +%Y-%m-%dT%H:%M:%SZ); $($PY -c 'import torch, platform; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}, device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' 2>&1); $(nproc) CPU cores; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
md ""
COMMON="--state=INFO --show_progress=False --use_gpu=$GPU --trajectory_dir=$WORK/traj --checkpoint_dir=$WORK/saved"

# Most telling first, so that a check cut short by its budget still says the most.
# 1. The student on ml-1m (synthetic teachers): epoch time, host syncs per batch, peak memory,
#    and CPU-vs-device agreement of targets and snapshot choices where the student lists agree.
TAIL=12 step "gpu_check.py: student epochs, host syncs, peak memory, CPU-vs-device agreement" \
  150 $RUN benchmarks/gpu_check.py --device $DEVICE --data-path "$DATA" $QUICK

# 2. The pipeline on the device, in one process: every teacher (EASE too: it scores on the CPU
#    beside a CUDA run) trained and recorded, both losses (switch_share 0.01 switches at the
#    first knowledge step), knowledge steps, RRD and DCD, the report.
TAIL=25 step "pipeline on ml-100k: 7 teachers recorded, both losses, knowledge steps, RRD, DCD, report" \
  240 $RUN run_hetcomp.py --model=HetCompStudent --dataset=ml-100k $COMMON \
  "--teacher_config={'default': {'epochs': $EPOCHS, 'eval_step': 1}}" \
  --teachers="[BPR,CML,NeuMF,LightGCN,MultiVAE,ItemVAE,EASE]" \
  --epochs=$((EPOCHS * 10)) --kc_period=$EPOCHS --eval_step=$EPOCHS --switch_share=0.01 \
  --baseline="~" --distillation_baselines="[RRD,DCD]"

# 3. The whole test suite with its models on the device (HETCOMP_TEST_DEVICE). Interrupted by
#    the budget, pytest still prints what failed so far (the step's timeout sends SIGINT).
SUBSET=()
[ $DRY = 1 ] && SUBSET=(-k "test_device or test_recording")  # the dry run only proves the step
TAIL=25 step "test suite (HETCOMP_TEST_DEVICE=$TEST_DEVICE)" 240 \
  env HETCOMP_TEST_DEVICE=$TEST_DEVICE $PY -m pytest -q -rfE -p no:cacheprovider tests "${SUBSET[@]}"

# 4. Student training speed on CiteULike (synthetic teachers).
if [ -f dataset/citeulike-t/users.dat ]; then
  TAIL=25 step "bench_student.py --device $DEVICE (CiteULike)" 180 \
    $RUN benchmarks/bench_student.py --device $DEVICE --quick --repeats 1 \
    --users-dat dataset/citeulike-t/users.dat
else
  md "## bench_student.py: skipped (no dataset/citeulike-t/users.dat)"; md ""
fi

# 5. RecBole's loader against vectorised_loader on the device (where the data path dominates).
TAIL=10 step "profile_epoch.py: RecBole's loader vs vectorised_loader, BPR and CML (ml-100k)" 120 \
  $RUN benchmarks/profile_epoch.py --dataset ml-100k --models BPR CML --compare-loaders \
  --epochs 2 --use_gpu=$GPU --trajectory_dir=$WORK/traj

md "Overall: $([ $STATUS -eq 0 ] && echo 'every step passed' || echo 'some steps FAILED or were SKIPPED (see above)')."
md "Total: $(( $(date +%s) - T0 )) s of a $BUDGET s budget."
mv "$REPORT.tmp" "$REPORT"
if [ -n "${OUT:-}" ]; then cp "$REPORT" "$OUT/" && rm -f "$OUT/gpu_check.partial.md"; fi
echo "[gpu_check] wrote $REPORT"
exit $STATUS
