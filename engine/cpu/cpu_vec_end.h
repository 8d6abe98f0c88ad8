/* Undoes the short names of cpu_vec.h at the end of a kernels header. */
#undef vf
#undef vi
#undef INLINE
