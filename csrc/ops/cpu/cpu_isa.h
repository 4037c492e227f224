// Which copy of the CPU kernels runs: detected once with cpuid/xgetbv (no libtorch
// call), narrowed by ATEN_CPU_CAPABILITY exactly as torch's own kernels are
// ("default", "avx2", "avx512"; a wider value than the CPU supports is ignored).
#pragma once

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace adaptive_conv_ext::cpu {

enum class Isa { Default = 0, Avx2 = 1, Avx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "default";
  }
}

// The widest instruction set this CPU and OS support (registers saved by the OS
// included: AVX state needs XCR0 bits 1-2, AVX-512 also bits 5-7).
inline Isa hardware_isa() {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Default;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12);
  if (!osxsave || !avx || !fma) return Isa::Default;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return Isa::Default;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::Default;
  const bool avx2 = b & (1u << 5);
  if (!avx2) return Isa::Default;
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));  // F DQ BW VL
  if (avx512 && (xcr0_lo & 0xE6u) == 0xE6u) return Isa::Avx512;
  return Isa::Avx2;
#else
  return Isa::Default;
#endif
}

// ATEN_CPU_CAPABILITY, if set to a known value no wider than the hardware, else the hardware.
inline Isa select_isa(Isa hardware, const char* requested) {
  if (requested == nullptr || *requested == '\0') return hardware;
  std::string r(requested);
  for (auto& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  Isa want = hardware;
  if (r == "default") want = Isa::Default;
  else if (r == "avx2") want = Isa::Avx2;
  else if (r == "avx512") want = Isa::Avx512;
  return static_cast<int>(want) <= static_cast<int>(hardware) ? want : hardware;
}

inline Isa detected_isa() {
  static const Isa isa = select_isa(hardware_isa(), std::getenv("ATEN_CPU_CAPABILITY"));
  return isa;
}

}  // namespace adaptive_conv_ext::cpu
