/*
 * The critical-section implementation once_cell asks for (hickory-proto, under
 * dhcproto, turns on its critical-section feature). A Rust implementation
 * would be a #[no_mangle] symbol that the cdylib exports; this one is hidden,
 * so libvnet.so exports only vnet_* while libvnet.a still links into C
 * programs. critical-section 1.x without a restore-state feature: acquire
 * and release take and return nothing, and must nest, hence a recursive lock.
 */
#define _GNU_SOURCE
#include <pthread.h>

static pthread_mutex_t vnet_cs_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

__attribute__((visibility("hidden"))) void _critical_section_1_0_acquire(void) {
    pthread_mutex_lock(&vnet_cs_lock);
}

__attribute__((visibility("hidden"))) void _critical_section_1_0_release(void) {
    pthread_mutex_unlock(&vnet_cs_lock);
}
