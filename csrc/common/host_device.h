// HANET_HD: an inline function for the host and the device (detectron2's
// HOST_DEVICE_INLINE); HANET_HOST: inline, host only (under nvcc too).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HANET_HD __host__ __device__ __forceinline__
#define HANET_HOST __host__ inline
#else
#define HANET_HD inline
#define HANET_HOST inline
#endif
