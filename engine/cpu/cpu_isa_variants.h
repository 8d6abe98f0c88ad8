/* Compiles the kernels of CPU_ISA_KERNELS (a header written against VW, the vector width
 * in floats, and KNAME(name), the variant's function name) once per instruction set:
 * AVX2 + FMA on x86-64 with GCC (name##_avx2, chosen at run time; HAVE_AVX2_KERNELS is
 * defined then) and 4-lane vectors everywhere (name##_base: SSE2, NEON). Include it once
 * per translation unit after defining CPU_ISA_KERNELS. */
#ifndef CPU_ISA_KERNELS
#error "define CPU_ISA_KERNELS as the kernels' header before including cpu_isa_variants.h"
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* kernel helpers are always inlined */
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_AVX2_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast") /* -std=c11 turns contraction off */
#define VW 8
#define KNAME(name) name##_avx2
#include CPU_ISA_KERNELS
#undef VW
#undef KNAME
#pragma GCC pop_options
#endif
#define VW 4
#define KNAME(name) name##_base
#include CPU_ISA_KERNELS
#undef VW
#undef KNAME
