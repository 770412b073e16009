// block-io: the seed's "harder #defines" case. Whether a block request writes was once
// `cmd_flags & REQ_WRITE`, then an op shifted by REQ_OP_SHIFT, now `cmd_flags & REQ_OP_MASK ==
// REQ_OP_WRITE`; the op values live in `enum req_opf` up to 5.x and `enum req_op` from 6.0, and a
// request names its disk as rq->rq_disk up to 5.16 and rq->q->disk after. One kprobe on
// blk_mq_start_request takes the branch each kernel needs (bpf_core_enum_value_exists,
// bpf_core_field_exists) and sums what the agent wrote to the null_blk device nullb0 (a module
// the agent loads: every block driver is a module in these kernels).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* The op numbers before 6.0 (include/linux/blk_types.h: enum req_opf). */
enum req_opf___old {
	REQ_OP_READ___old = 0,
	REQ_OP_WRITE___old = 1,
};

/* Up to 5.16 a request points at its disk directly. */
struct request___old {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

/* REQ_OP_BITS is 8 on every kernel since 4.10: a #define, so not in BTF, and a constant here. */
#define REQ_OP_MASK_CM ((1u << 8) - 1)

const volatile char target_disk[8] = "nullb0";

long write_bytes = 0;
long write_requests = 0;
long read_requests = 0;
long saw_read = 0;
long saw_write = 0;
long used_rq_disk = -1;
long write_op = -1;

static __always_inline int is_target(struct gendisk *disk)
{
	char name[8] = {};
	BPF_CORE_READ_STR_INTO(&name, disk, disk_name);
	for (int i = 0; i < sizeof(name); i++) {
		if (name[i] != target_disk[i])
			return 0;
		if (!name[i])
			return 1;
	}
	return 1;
}

SEC("kprobe/blk_mq_start_request")
int BPF_KPROBE(on_start_request, struct request *rq)
{
	struct gendisk *disk;
	unsigned int op, wr, rd;

	if (bpf_core_field_exists(struct request___old, rq_disk)) {
		disk = BPF_CORE_READ((struct request___old *)rq, rq_disk);
		used_rq_disk = 1;
	} else {
		disk = BPF_CORE_READ(rq, q, disk);
		used_rq_disk = 0;
	}
	if (!disk || !is_target(disk))
		return 0;

	if (bpf_core_enum_value_exists(enum req_op, REQ_OP_WRITE)) {
		wr = bpf_core_enum_value(enum req_op, REQ_OP_WRITE);
		rd = bpf_core_enum_value(enum req_op, REQ_OP_READ);
	} else {
		wr = bpf_core_enum_value(enum req_opf___old, REQ_OP_WRITE___old);
		rd = bpf_core_enum_value(enum req_opf___old, REQ_OP_READ___old);
	}
	write_op = wr;
	op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK_CM;
	if (op == wr) {
		__sync_fetch_and_add(&write_bytes, BPF_CORE_READ(rq, __data_len));
		__sync_fetch_and_add(&write_requests, 1);
		saw_write = 1;
	} else if (op == rd) {
		__sync_fetch_and_add(&read_requests, 1);
		saw_read = 1;
	}
	return 0;
}
