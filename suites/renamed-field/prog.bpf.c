// renamed-field: task_struct.state (a `long`, up to 5.13) became `unsigned int __state` in 5.14.
// One object handles both: bpf_core_field_exists() on the new name picks the branch, and the
// old layout is described by a "flavoured" local type, struct task_struct___old, which the
// loader matches to `struct task_struct` by its essential name. On each kernel exactly one
// branch survives; the other's relocations are poisoned and must be unreachable.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

const volatile int target_tgid = 0;

long state = -1;          /* the task's state as read on this kernel */
int branch = 0;           /* 1: task_struct___old.state, 2: task_struct.__state */
int has_new_state = -1;   /* bpf_core_field_exists(task_struct.__state) */
int has_old_state = -1;   /* bpf_core_field_exists(task_struct___old.state) */
int new_state_size = -1;  /* bpf_core_field_size(task_struct.__state), when it exists */
int old_state_size = -1;  /* bpf_core_field_size(task_struct___old.state), when it exists */
int hits = 0;

SEC("kprobe/__set_task_comm")
int BPF_KPROBE(set_task_comm_state, struct task_struct *tsk)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct___old *old = (void *)tsk;

	if ((int)(id >> 32) != target_tgid || (int)id != target_tgid)
		return 0;
	has_new_state = bpf_core_field_exists(tsk->__state);
	has_old_state = bpf_core_field_exists(old->state);
	if (bpf_core_field_exists(tsk->__state)) {
		state = BPF_CORE_READ(tsk, __state);
		new_state_size = bpf_core_field_size(tsk->__state);
		branch = 2;
	} else {
		state = BPF_CORE_READ(old, state);
		old_state_size = bpf_core_field_size(old->state);
		branch = 1;
	}
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
