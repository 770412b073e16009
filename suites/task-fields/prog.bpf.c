// task-fields: the seed's first example. A kprobe on __set_task_comm reads tsk->pid three ways:
//  1. BPF_CORE_READ(tsk, pid): a CO-RE field-offset relocation feeding bpf_probe_read_kernel;
//  2. the seed's second line, bpf_probe_read_kernel(tsk + offset of pid), with the offset taken
//     by bpf_core_field_offset(), i.e. relocated as the seed proposes;
//  3. the same line with a plain __builtin_offsetof(): clang folds it to a constant from
//     vmlinux.h at compile time (no relocation is emitted), so it reads pid only on kernels whose
//     task_struct puts pid where the header kernel did. The suite checks exactly that: the plain
//     read equals pid if and only if the relocated offset equals the compile-time one.
// task_struct.pid moves across the matrix (2232 bytes on 5.10, 2416 on 6.1, 2872 on 7.3).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Set before load by the agent (spec rodata: target_tgid: $pid). */
const volatile int target_tgid = 0;

int pid_core = -1;      /* BPF_CORE_READ(tsk, pid) */
int pid_offsetof = -1;  /* bpf_probe_read_kernel at tsk + bpf_core_field_offset(pid) */
int pid_fixed = -1;     /* bpf_probe_read_kernel at tsk + __builtin_offsetof(pid): not relocated */
long core_offset = -1;  /* bpf_core_field_offset(struct task_struct, pid) on this kernel */
long fixed_offset = -1; /* __builtin_offsetof(struct task_struct, pid) in vmlinux.h */
int fixed_is_pid = -1;  /* pid_fixed == pid_core */
int same_offset = -1;   /* core_offset == fixed_offset */
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
	bpf_probe_read_kernel(&pid, sizeof(pid), (void *)tsk + bpf_core_field_offset(struct task_struct, pid));
	pid_offsetof = pid;
	pid = -1;
	bpf_probe_read_kernel(&pid, sizeof(pid), (void *)tsk + __builtin_offsetof(struct task_struct, pid));
	pid_fixed = pid;
	core_offset = bpf_core_field_offset(struct task_struct, pid);
	fixed_offset = __builtin_offsetof(struct task_struct, pid);
	fixed_is_pid = pid_fixed == pid_core;
	same_offset = core_offset == fixed_offset;
	tgid_core = BPF_CORE_READ(tsk, tgid);
	tid_helper = (int)id;
	BPF_CORE_READ_STR_INTO(&old_comm, tsk, comm);
	bpf_probe_read_kernel_str(new_comm, sizeof(new_comm), buf);
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
