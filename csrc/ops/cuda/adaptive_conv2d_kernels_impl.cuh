// CUDA kernels for adaptive_conv2d (SPEC section 1), torch-free: device code and the
// launcher templates. Included only by the adaptive_conv2d_kernels*.cu files, each of
// which instantiates the launchers for one dtype (so that they compile in parallel).
//
// Layout of the work (one output pixel per thread, 256 threads per block):
//
// forward      block = (image n, group, tile of output pixels, tile of output channels).
//              Loops over the group's input channels in chunks: stages the input box
//              (tile + halo) and Q/beta of the chunk in shared memory, then each thread
//              computes sigma = beta + Q.X, tanh, and K.X for its pixel; the per-channel
//              result is added to a per-thread shared-memory accumulator, y written once.
// grad_input   block = (image n, input channel c, tile). Loops over every output channel
//              of c's group: recomputes sigma and K, accumulates the patch gradient dX of
//              its pixel (direct term g*K and the term through the kernel dsigma*Q), then
//              scatters the patches into a shared box (tile + halo) one tap per round so
//              that no two threads ever add to the same element (fixed order, no shared
//              atomics), and flushes the box: plain stores when one tile covers the image,
//              else atomicAdd, or (deterministic) a per-tile workspace that a gather kernel
//              sums in a fixed order.
// grad_weight  block = (tile of output channels, input channel c, chunk of kernel rows t,
//              split s). Q rows of the block stay in shared memory; the block walks over
//              the tiles (n, tile) = s, s + S, ...; per tile: stage the input box, each
//              thread recomputes dsigma for its pixel (all rows of the block) into shared
//              memory together with its patch; then the threads switch roles: each owns
//              one (o, t, a-range) row of dQ and sums dsigma * X over the tile's pixels.
//              Per-tile partials are added to double running sums (float32 sums over
//              ~10^5 pixels would lose the 1e-6 accuracy the SPEC asks for), reduced over
//              the block in a fixed order, and leave the block once: plain stores (one
//              split), double atomicAdd, or (deterministic) a per-split workspace reduced
//              in a fixed order by a second kernel. Nothing of the size of sigma is stored.
#pragma once

#include "kernels/launchers.cuh"
