/*
 * Userspace stand-ins for the handful of kernel facilities that the kernel's
 * rbtree sources (lib/rbtree.c, include/linux/rbtree*.h) rely on.  This file is
 * part of vmapsim's test oracle, not kernel code: the stub headers next to it
 * (linux/compiler.h, linux/container_of.h, linux/stddef.h, linux/rcupdate.h,
 * linux/export.h) all just include it, so that with `-I compat` placed before
 * `-I <kernel>/include` the kernel files compile unmodified in userspace.
 *
 * The oracle is single-threaded, so the memory-ordering helpers reduce to
 * plain volatile accesses.
 */
#ifndef VMAPSIM_KCOMPAT_H
#define VMAPSIM_KCOMPAT_H

#include <stddef.h>
#include <stdbool.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((__always_inline__))
#endif

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define READ_ONCE(x)     (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) do { *(volatile __typeof__(x) *)&(x) = (v); } while (0)

#define rcu_assign_pointer(p, v) WRITE_ONCE((p), (v))
#define rcu_dereference_raw(p)   READ_ONCE(p)

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define EXPORT_SYMBOL(sym)     /* no modules in userspace */
#define EXPORT_SYMBOL_GPL(sym) /* no modules in userspace */

#endif /* VMAPSIM_KCOMPAT_H */
