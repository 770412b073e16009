// iter-num: a suite for kernels newer than the oldest in the matrix. Open-coded numeric
// iterators (bpf_iter_num_new/next/destroy, kfuncs since 6.4) loop over [0, n) with n set in
// .rodata before load. The kfuncs are resolved against the running kernel's BTF (their BTF FUNC
// ids patched into the calls); the iterator state type is declared locally with a `___cm`
// flavour so the 6.1 vmlinux.h (which lacks struct bpf_iter_num) still compiles it. On kernels
// below 6.4 the kfuncs do not exist: the spec's minKernel makes that an expected skip.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct bpf_iter_num___cm {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num___cm *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num___cm *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num___cm *it) __ksym;

const volatile int n = 1;

int iterations = -1;
int first = -1;
int last = -1;

SEC("socket")
int iterate(struct __sk_buff *skb)
{
	struct bpf_iter_num___cm it;
	int *v;
	int k = 0, lo = -1, hi = -1;

	bpf_iter_num_new(&it, 0, n);
	while ((v = bpf_iter_num_next(&it))) {
		if (k == 0)
			lo = *v;
		hi = *v;
		k++;
	}
	bpf_iter_num_destroy(&it);
	iterations = k;
	first = lo;
	last = hi;
	return 0;
}
