// task-fields: the seed's first example. A kprobe on __set_task_comm reads tsk->pid twice:
// once with BPF_CORE_READ (a CO-RE field-offset relocation through bpf_probe_read_kernel) and
// once as the seed wrote it, bpf_probe_read_kernel at `(void *)tsk + offsetof(struct task_struct,
// pid)` (clang turns __builtin_offsetof on a preserve_access_index type into the same relocation).
// task_struct.pid moves between every kernel of the matrix (2232 bytes on 5.10, 2872 on 7.3),
// so a wrong offset reads garbage. comm (old and new) is read too.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Set before load by the agent (spec rodata: target_tgid: $pid). */
const volatile int target_tgid = 0;

int pid_core = -1;      /* BPF_CORE_READ(tsk, pid) */
int pid_offsetof = -1;  /* bpf_probe_read_kernel at tsk + offsetof(struct task_struct, pid) */
int tgid_core = -1;     /* BPF_CORE_READ(tsk, tgid) */
int tid_helper = -1;    /* bpf_get_current_pid_tgid() low half: the writer's thread id */
int hits = 0;
char old_comm[16] = {}; /* tsk->comm before the rename */
char new_comm[16] = {}; /* the name being set (second argument) */

SEC("kprobe/__set_task_comm")
int BPF_KPROBE(set_task_comm, struct task_struct *tsk, const char *buf)
{
	__u64 id = bpf_get_current_pid_tgid();
	int pid = -1;

	/* Only the agent's main thread (tid == tgid): libuv worker threads name themselves too. */
	if ((int)(id >> 32) != target_tgid || (int)id != target_tgid)
		return 0;
	pid_core = BPF_CORE_READ(tsk, pid);
	bpf_probe_read_kernel(&pid, sizeof(pid), (void *)tsk + __builtin_offsetof(struct task_struct, pid));
	pid_offsetof = pid;
	tgid_core = BPF_CORE_READ(tsk, tgid);
	tid_helper = (int)id;
	BPF_CORE_READ_STR_INTO(&old_comm, tsk, comm);
	bpf_probe_read_kernel_str(new_comm, sizeof(new_comm), buf);
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
