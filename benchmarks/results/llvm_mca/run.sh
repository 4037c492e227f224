#!/usr/bin/env bash
# Regenerates the llvm-mca table (benchmarks/results/llvm_mca_20261206.md): compiles each
# loop file per instruction set with g++ -O3 -S, then llvm-mca-14 on the regions between
# the LLVM-MCA-BEGIN/END markers. loops.cpp includes the kernel itself
# (adaptive_conv2d_cpu_kernel_impl.h: torch-free, its parallel regions are lambdas handed to
# parallel.h and compiled here in full), for the two epilogues; kstep.cpp and dq.cpp restate micro_gemm's and
# backward_dq's loop bodies with the kernel's vector layer, MR and NR (a marker region inside
# the kernel's own k loop would need markers in the kernel source).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../../.." && pwd); out=$(mktemp -d)
declare -A flags=([portable]="" [avx2]="-mavx2 -mfma -DCPU_CAPABILITY_AVX2"
                  [avx512]="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -DCPU_CAPABILITY_AVX512")
for isa in portable avx2 avx512; do
  for src in kstep dq loops tanh_loop; do
    g++ -std=c++20 -O3 ${flags[$isa]} -I"$root/csrc" -S "$here/$src.cpp" -o "$out/${src}_$isa.s"
  done
  g++ -std=c++20 -O3 ${flags[$isa]} -DWITH_DIVISION -I"$root/csrc" -S "$here/tanh_loop.cpp" -o "$out/tanh_loop_div_$isa.s"
  # loops.cpp's dq region keeps its accumulators in memory (they are a reference argument): dq.cpp replaces it
  sed -i '/LLVM-MCA-\(BEGIN\|END\) backward_dq_pstep/d' "$out/loops_$isa.s"
  for cpu in sapphirerapids znver3; do
    [ "$isa" = avx512 ] && [ "$cpu" = znver3 ] && continue  # LLVM 14's znver3 has no AVX-512
    for s in kstep dq loops tanh_loop tanh_loop_div; do
      llvm-mca-14 -mcpu=$cpu -iterations=100 "$out/${s}_$isa.s" 2>/dev/null |
        awk -v isa=$isa -v cpu=$cpu -v s=$s '/^\[[0-9]+\] Code Region - /{reg=$NF} /^Iterations:/{it=$2}
          /^Instructions:/{ins=$2} /^Total Cycles:/{cyc=$3}
          /^Block RThroughput:/{if (s ~ /div/) reg=reg " (with division)"; printf "| %s | %s | %s | %d | %.2f | %s |\n", isa, cpu, reg, ins/it, cyc/it, $3}'
    done
  done
done
