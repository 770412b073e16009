// enums-and-sizes: the CO-RE relocations that are not field offsets. Enumerator values that
// change between kernels (cpuhp_state and pageflags are renumbered as members are added),
// enumerators that only newer kernels have (guarded by bpf_core_enum_value_exists), type sizes
// that differ (struct task_struct: 9408 bytes on 5.10, 6144 on 7.3), types that only exist on
// newer kernels (struct bpf_iter_num, 6.4+), type matching (bpf_core_type_matches: a local
// `struct task_struct { unsigned int __state; }` matches only kernels from 5.14 on), and the
// kernel's own BTF type id of struct task_struct. Local types whose names the 6.1 vmlinux.h
// lacks are declared here with a `___cm` flavour suffix, so any header kernel compiles them.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

enum bpf_map_type___cm {
	BPF_MAP_TYPE_BLOOM_FILTER___cm = 1,
	BPF_MAP_TYPE_ARENA___cm = 2,
	__MAX_BPF_MAP_TYPE___cm = 3,
};

struct bpf_iter_num___cm {
	__u64 __opaque[1];
};

/* Type matching compares names at every level, integers included, so a local `long` does not
 * match the kernel's `long int` (clang and gcc name integers differently): the probes below use
 * integer types both compilers spell alike. */
struct task_struct___u32_state {
	unsigned int __state;
};

struct task_struct___ids {
	int pid;
	int tgid;
};


long ringbuf_value = -1;
long bloom_exists = -1, bloom_value = -1;
long arena_exists = -1, arena_value = -1;
long max_map_type_exists = -1, max_map_type = -1;
long cpuhp_ap_online_dyn = -1;
long pg_uptodate = -1;
long task_struct_size = -1;
long sock_size = -1;
long iter_num_exists = -1, iter_num_size = -1;
long u32_state_matches = -1;
long ids_match = -1;
long task_struct_btf_id = -1;
long pid_offset = -1;
long comm_size = -1;

SEC("socket")
int enums_and_sizes(struct __sk_buff *skb)
{
	ringbuf_value = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);

	bloom_exists = bpf_core_enum_value_exists(enum bpf_map_type___cm, BPF_MAP_TYPE_BLOOM_FILTER___cm);
	if (bpf_core_enum_value_exists(enum bpf_map_type___cm, BPF_MAP_TYPE_BLOOM_FILTER___cm))
		bloom_value = bpf_core_enum_value(enum bpf_map_type___cm, BPF_MAP_TYPE_BLOOM_FILTER___cm);

	arena_exists = bpf_core_enum_value_exists(enum bpf_map_type___cm, BPF_MAP_TYPE_ARENA___cm);
	if (bpf_core_enum_value_exists(enum bpf_map_type___cm, BPF_MAP_TYPE_ARENA___cm))
		arena_value = bpf_core_enum_value(enum bpf_map_type___cm, BPF_MAP_TYPE_ARENA___cm);

	max_map_type_exists = bpf_core_enum_value_exists(enum bpf_map_type___cm, __MAX_BPF_MAP_TYPE___cm);
	if (bpf_core_enum_value_exists(enum bpf_map_type___cm, __MAX_BPF_MAP_TYPE___cm))
		max_map_type = bpf_core_enum_value(enum bpf_map_type___cm, __MAX_BPF_MAP_TYPE___cm);

	cpuhp_ap_online_dyn = bpf_core_enum_value(enum cpuhp_state, CPUHP_AP_ONLINE_DYN);
	pg_uptodate = bpf_core_enum_value(enum pageflags, PG_uptodate);

	task_struct_size = bpf_core_type_size(struct task_struct);
	sock_size = bpf_core_type_size(struct sock);

	iter_num_exists = bpf_core_type_exists(struct bpf_iter_num___cm);
	if (bpf_core_type_exists(struct bpf_iter_num___cm))
		iter_num_size = bpf_core_type_size(struct bpf_iter_num___cm);

	u32_state_matches = bpf_core_type_matches(struct task_struct___u32_state);
	ids_match = bpf_core_type_matches(struct task_struct___ids);

	task_struct_btf_id = bpf_core_type_id_kernel(struct task_struct);
	pid_offset = bpf_core_field_offset(struct task_struct, pid);
	comm_size = bpf_core_field_size(struct task_struct, comm);
	return 0;
}
