// ringbuf-fentry: a BTF-typed fentry program (BPF trampoline, 5.5+) on do_sys_openat2, which
// every kernel of the matrix has (openat/openat2/open all go through it), sending one record per
// call to a BPF_MAP_TYPE_RINGBUF (5.8+). fentry arguments are typed by the kernel's BTF; the
// filename is a user pointer read with bpf_probe_read_user_str. Only the agent's calls on one
// marker path are sent, so the guest can count them exactly.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile int target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

struct event {
	__u32 tgid;
	__u32 tid;
	__s32 dfd;
	__u32 seq;
	char filename[64];
};

int calls = 0;      /* every open by the agent's process */
int sent = 0;       /* records reserved and submitted */
int dropped = 0;    /* ring buffer full */

SEC("fentry/do_sys_openat2")
int BPF_PROG(openat2_entry, int dfd, const char *filename, struct open_how *how)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct event *e;

	if ((int)(id >> 32) != target_tgid)
		return 0;
	__sync_fetch_and_add(&calls, 1);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->tgid = id >> 32;
	e->tid = (__u32)id;
	e->dfd = dfd;
	/* No fetch-and-add return value: BPF_FETCH atomics need 5.12; one agent thread opens. */
	e->seq = sent;
	__sync_fetch_and_add(&sent, 1);
	bpf_probe_read_user_str(e->filename, sizeof(e->filename), filename);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
