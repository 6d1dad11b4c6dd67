#!/usr/bin/env bash
# Everything sdnseg checks on a CUDA machine, in one go (CI has no GPU):
#   1. the operator tests (tests/nn) with CUDA tensors, default kernel configs;
#   2. `sdc_speed_cuda.py --check`: Triton SDC, and the three-GEMM path with the Triton
#      element-wise kernels, and their gradients against float64;
#   3. `sdc_speed_cuda.py`: timings vs F.conv2d -> benchmarks/results/sdc_speed_cuda.{json,md}
#      (methods: fused Triton kernels, three GEMMs + Triton element-wise kernels, three GEMMs +
#      PyTorch element-wise ops, F.conv2d);
#   4. a short fit (bf16-mixed, +SDN through Triton) and a test of its checkpoint on the GPU;
#   5. opt-in (STEPS="... breakdown"): `sdc_speed_cuda.py --breakdown`, per-kernel CUDA times
#      of every method at the first shape -> benchmarks/results/sdc_speed_cuda_breakdown.txt.
# Run from the repository root: `bash benchmarks/cuda_session.sh`. Logs and results are copied to
# $OUT (default /tmp/sdnseg_cuda). Each step has its own time limit so a slow one cannot starve
# the rest; the exit status is 1 if any step failed. To rerun some steps only:
#   STEPS="bench fit" BENCH_ARGS="--precisions fp32 --merge" bash benchmarks/cuda_session.sh
# (--merge replaces only the precisions measured now and keeps the others' rows and dates).
set -uo pipefail
out=${OUT:-/tmp/sdnseg_cuda}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=()
steps=" ${STEPS:-tests check bench fit} "

want() { [[ $steps == *" $1 "* ]]; }

step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc"
  [ "$rc" = 0 ] || failed+=("$name")
}

step environment 60 python3 -c "import torch, triton
print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))"
want tests && SDNSEG_TRITON_AUTOTUNE=0 step tests 120 python3 -m pytest -q -p no:cacheprovider \
  tests/nn
want check && SDNSEG_TRITON_AUTOTUNE=0 step check "${CHECK_LIMIT:-150}" python3 benchmarks/sdc_speed_cuda.py --check
if want bench; then
  # Rewrites benchmarks/results/sdc_speed_cuda.* after every shape, so a partial run keeps its
  # rows; without --merge in BENCH_ARGS a rerun replaces the whole file.
  step bench "${BENCH_LIMIT:-180}" python3 benchmarks/sdc_speed_cuda.py \
    ${BENCH_ARGS:---precisions bf16 tf32 fp32}
  cp benchmarks/results/sdc_speed_cuda.json benchmarks/results/sdc_speed_cuda.md "$out/"
fi
if want breakdown; then
  step breakdown "${BREAKDOWN_LIMIT:-120}" python3 benchmarks/sdc_speed_cuda.py --breakdown \
    ${BREAKDOWN_ARGS:---precisions bf16}
  cp benchmarks/results/sdc_speed_cuda_breakdown.txt "$out/" 2>/dev/null
fi
if want fit; then
  # A short +SDN training in bf16 mixed precision (SDC through Triton), then a test of its
  # checkpoint, in a run folder of its own.
  run_root=$(mktemp -d)
  step fit 90 python3 -m sdnseg.engine.cli fit --config configs/quickstart.yaml --name cuda_smoke \
    --trainer.accelerator gpu --trainer.precision bf16-mixed --trainer.deterministic false \
    --trainer.max_steps 100 --trainer.val_check_interval 50 --runs_dir "$run_root"
  ckpt=$(find "$run_root" -name last.ckpt | head -1)
  if [ -n "$ckpt" ]; then
    step test_checkpoint 50 python3 -m sdnseg.engine.cli test --config configs/quickstart.yaml \
      --name cuda_smoke --runs_dir "$run_root" --trainer.accelerator gpu \
      --trainer.deterministic false --ckpt_path "$ckpt"
  else
    echo "== test_checkpoint: no checkpoint from fit"
    failed+=(test_checkpoint)
  fi
  rm -rf "$run_root"
fi

echo "failed steps: ${failed[*]:-none}"
[ ${#failed[@]} = 0 ]
