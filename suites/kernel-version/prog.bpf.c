// kernel-version: the seed's `__bpf_kernel_version` idea as libbpf ships it, an extern the
// loader fills with the running kernel's LINUX_VERSION_CODE before load. Copied to .bss by a
// socket filter run with BPF_PROG_TEST_RUN, and used in a branch (old/new) the way the seed's
// `if (__bpf_kernel_version == 406)` does.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern int LINUX_KERNEL_VERSION __kconfig;

int kernel_version = -1;
int major = -1, minor = -1, patch = -1;
int at_least_5_14 = -1;
int runs = 0;

SEC("socket")
int copy_kernel_version(struct __sk_buff *skb)
{
	kernel_version = LINUX_KERNEL_VERSION;
	major = LINUX_KERNEL_VERSION >> 16;
	minor = (LINUX_KERNEL_VERSION >> 8) & 0xff;
	patch = LINUX_KERNEL_VERSION & 0xff;
	if (LINUX_KERNEL_VERSION >= KERNEL_VERSION(5, 14, 0))
		at_least_5_14 = 1;
	else
		at_least_5_14 = 0;
	runs++;
	return 0;
}
