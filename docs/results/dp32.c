#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define NA 24
int main(int argc, char**argv){
  __m512 a[NA]; for(int i=0;i<NA;i++) a[i]=_mm512_set1_ps(i);
  __m512bh x=(__m512bh)_mm512_set1_epi16(0x3f80), w=(__m512bh)_mm512_set1_epi16(0x0000);
  __asm__ volatile("" : "+v"(x), "+v"(w));
  long N=300000000/NA;
  double t0=now();
  for(long n=0;n<N;n++){
    #pragma GCC unroll 24
    for(int i=0;i<NA;i++) a[i]=_mm512_dpbf16_ps(a[i],x,w);
  }
  double t=now()-t0; float s=0; for(int i=0;i<NA;i++) s+=_mm512_reduce_add_ps(a[i]);
  double ops=(double)N*NA;
  printf("vdpbf16ps zmm, %d chains: %.3f G/s one core = %.1f GMAC/s (%g)\n", NA, ops/t/1e9, ops*32/t/1e9, s);
  __m512 f[NA]; for(int i=0;i<NA;i++) f[i]=_mm512_set1_ps(i);
  __m512 y=_mm512_set1_ps(1.0f), z=_mm512_set1_ps(0.0f);
  __asm__ volatile("" : "+v"(y), "+v"(z));
  t0=now();
  for(long n=0;n<N;n++){
    #pragma GCC unroll 24
    for(int i=0;i<NA;i++) f[i]=_mm512_fmadd_ps(y,z,f[i]);
  }
  t=now()-t0; s=0; for(int i=0;i<NA;i++) s+=_mm512_reduce_add_ps(f[i]);
  printf("vfmadd zmm: %.3f G/s one core (%g)\n", ops/t/1e9, s);
  return 0;}
