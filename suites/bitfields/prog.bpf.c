// bitfields: BPF_CORE_READ_BITFIELD_PROBED reads a field through four relocations (byte offset,
// byte size, left shift, right shift), so the same instructions read a bitfield on one kernel
// and a plain integer on another:
//   sk_userlocks  4-bit bitfield in 5.10 and 6.1, a plain u8 from 6.12 on;
//   sk_protocol   a plain u16 in every kernel of the matrix (it was an 8-bit bitfield before 5.6);
//   skc_net_refcnt a 1-bit bitfield everywhere (moves with struct sock_common's layout);
//   sk_type       a plain u16 that swaps places with sk_protocol in 7.x.
// Read in a kprobe on tcp_connect during the agent's loopback connect, whose client socket is
// bound to 127.0.0.1 with port 0 first (sk_userlocks = SOCK_BINDADDR_LOCK).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

const volatile int target_tgid = 0;

int protocol = -1;
int sock_type = -1;
int userlocks = -1;
int net_refcnt = -1;
int family = -1;
int hits = 0;

SEC("kprobe/tcp_connect")
int BPF_KPROBE(tcp_connect_bitfields, struct sock *sk)
{
	if ((int)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	protocol = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	sock_type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);
	userlocks = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_userlocks);
	net_refcnt = BPF_CORE_READ_BITFIELD_PROBED(&sk->__sk_common, skc_net_refcnt);
	family = BPF_CORE_READ_BITFIELD_PROBED(&sk->__sk_common, skc_family);
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
