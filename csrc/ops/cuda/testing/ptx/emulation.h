// The one header through which the CPU emulation gets the PTX instruction wrappers of
// kernels/ptx.cuh: the emulation runtime, ptx.cuh's register helpers (which, under
// ADAPTIVE_CONV_EMULATION, declare no wrapper), then the warp-wide CPU model of each
// instruction, with the wrappers' names and signatures. Include it before any kernel
// header; production code never includes it (ptx.cuh stops the emulation build that forgot).
#pragma once

#include "../emu_runtime.h"

#define ADAPTIVE_CONV_PTX_MODELS 1

#include "ops/cuda/kernels/ptx.cuh"

#include "cp_async.h"
#include "half2_arith.h"
#include "ldmatrix.h"
#include "mma_m16n8k16.h"
#include "shfl.h"
#include "tanh_packed.h"
