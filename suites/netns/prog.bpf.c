// netns: the seed's "#ifdef CONFIG_NET_NS" example. `sk->__sk_common.skc_net.net->ns.inum` is a
// three-level CO-RE read (possible_net_t holds `net` only when CONFIG_NET_NS=y), guarded by
// the CONFIG_NET_NS kconfig extern instead of an #ifdef. A kprobe on tcp_connect, filtered by
// the agent's tgid, records the namespace inode, the address family and the destination port.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

// __weak, or the object does not load where it matters: a kernel built with CONFIG_NET_NS=n has
// `# CONFIG_NET_NS is not set` in its config, which leaves a strong extern unresolved, and both
// libbpf and our loader then refuse the whole object (found by the 6.12-nonetns matrix entry).
extern bool CONFIG_NET_NS __kconfig __weak;

const volatile int target_tgid = 0;

unsigned int netns = 0;
int family = -1;
int dport = -1;
int hits = 0;

SEC("kprobe/tcp_connect")
int BPF_KPROBE(tcp_connect_netns, struct sock *sk)
{
	if ((int)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	if (CONFIG_NET_NS)
		netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	else
		netns = 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
