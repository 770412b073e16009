// kconfig: the seed's "#ifdef CONFIG_X becomes a run-time value". The loader fills these externs
// from the running kernel's config: a bool that is only set on PREEMPT_RT kernels, a bool set on
// every Debian kernel but not on 6.12-nonetns, a tristate that is m, y or n depending on the
// kernel/flavour, an int, and an option no kernel has, declared __weak (so it reads as 0 instead
// of failing the load).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern bool CONFIG_PREEMPT_RT __kconfig __weak;
// __weak: `# CONFIG_NET_NS is not set` leaves a strong extern unresolved (object refused).
extern bool CONFIG_NET_NS __kconfig __weak;
extern enum libbpf_tristate CONFIG_PHYLIB __kconfig __weak;
extern enum libbpf_tristate CONFIG_VIRTIO_PCI_LIB __kconfig __weak;
extern int CONFIG_HZ __kconfig;
extern bool CONFIG_COREMATRIX_NO_SUCH_OPTION __kconfig __weak;

int preempt_rt = -1;
int net_ns = -1;
int phylib = -1;          /* TRI_NO 0, TRI_YES 1, TRI_MODULE 2 */
int virtio_pci_lib = -1;
int hz = -1;
int missing = -1;
int rt_branch = -1;       /* what an #ifdef CONFIG_PREEMPT_RT would have compiled */

SEC("socket")
int copy_kconfig(struct __sk_buff *skb)
{
	preempt_rt = CONFIG_PREEMPT_RT;
	net_ns = CONFIG_NET_NS;
	phylib = CONFIG_PHYLIB;
	virtio_pci_lib = CONFIG_VIRTIO_PCI_LIB;
	hz = CONFIG_HZ;
	missing = CONFIG_COREMATRIX_NO_SUCH_OPTION;
	if (CONFIG_PREEMPT_RT)
		rt_branch = 1;
	else
		rt_branch = 0;
	return 0;
}
