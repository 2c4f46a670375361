/* The C half of the lazy binding in cmake/BerthLazyLibs.cmake: loads a library on the
 * first call of one of its functions and finds the function. Called from
 * berth_lazy_slow (slow_<arch>.S) on whichever thread makes that first call; two threads
 * racing resolve the same address and both store it. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lazy_sonames.h"

/* Laid out by the generated trampolines (lazy_stubs.S). */
struct berth_lazy_desc {
  void *fn;
  uint64_t lib;
  char name[];
};

enum { kLibCount = sizeof berth_lazy_sonames / sizeof berth_lazy_sonames[0] };
static void *handles[kLibCount];

static void fail(const char *what, const char *name) {
  /* Nothing sensible can be returned in place of an arbitrary library function: the
   * package depends on the library, so this is a broken installation. */
  const char *err = dlerror();
  fprintf(stderr, "berth: cannot %s %s: %s\n", what, name, err ? err : "unknown error");
  abort();
}

__attribute__((visibility("hidden"), used)) void *berth_lazy_resolve(struct berth_lazy_desc *d) {
  void *h = __atomic_load_n(&handles[d->lib], __ATOMIC_ACQUIRE);
  if (h == NULL) {
    /* RTLD_LOCAL: the library's symbols serve only the calls that come through here. */
    h = dlopen(berth_lazy_sonames[d->lib], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) fail("load", berth_lazy_sonames[d->lib]);
    __atomic_store_n(&handles[d->lib], h, __ATOMIC_RELEASE);
  }
  void *fn = dlsym(h, d->name);
  if (fn == NULL) fail("find", d->name);
  __atomic_store_n(&d->fn, fn, __ATOMIC_RELEASE);
  return fn;
}
