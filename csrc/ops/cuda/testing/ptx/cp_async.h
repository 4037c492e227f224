// CPU model of cp.async (copy of kBytes, zero-fill when !valid), commit_group and wait_all:
// the copy completes at once, so commit and wait have nothing left to do.
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

template <int kBytes>
void cp_async(void* smem, const void* gmem, bool valid) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  if (reinterpret_cast<uintptr_t>(smem) % kBytes != 0 || (valid && reinterpret_cast<uintptr_t>(gmem) % kBytes != 0)) {
    std::fprintf(stderr, "cp.async: %d-byte copy with a misaligned address\n", kBytes);
    std::abort();
  }
  if (valid) {
    std::memcpy(smem, gmem, kBytes);
  } else {
    std::memset(smem, 0, kBytes);
  }
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
