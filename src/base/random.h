/* Random values for ids and load-balancing picks, from the kernel's CSPRNG
 * (getrandom(2)) drawn through a per-thread reserve refilled a few hundred
 * bytes at a time: glibc's arc4random makes one getrandom(2) call per call,
 * a syscall or three per request on an L7 path. Keys take their bytes
 * straight from the kernel (a draw larger than a quarter of the reserve
 * does too). Each reserved byte is handed out once and zeroed. Not for a
 * process that forks without exec (the child would repeat the reserve). */
#ifndef ZT_BASE_RANDOM_H
#define ZT_BASE_RANDOM_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf (caller-owned) with n random bytes. Never fails. */
void zt_random(void *buf, size_t n);
/* A random 32-bit value. */
uint32_t zt_random_u32(void);
/* A random value in [0, n), without modulo bias; 0 when n is 0. */
uint32_t zt_random_below(uint32_t n);

#endif
