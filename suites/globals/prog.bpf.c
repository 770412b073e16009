// globals: the seed's last slide. `cfg` lives in .rodata (const volatile: the loader writes the
// spec's values into the map before load and freezes it, and the verifier may fold them),
// `stats` in .bss (zero-initialised), `counter` in .data with a non-zero initial value the
// loader must copy from the ELF. A socket filter counts packets whose length is outside
// [cfg.min, cfg.max], as in the seed; BPF_PROG_TEST_RUN feeds it packets of chosen sizes.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct my_config {
	int max;
	int min;
};

const volatile struct my_config cfg = { .max = 1 << 30, .min = 0 };

int stats;                 /* .bss: packets outside [min, max] */
int counter = 1000;        /* .data: starts at 1000, +1 per packet */
long total_len;            /* .bss: sum of skb->len */
int seen_max, seen_min;    /* what the program saw in .rodata */

SEC("socket")
int bpf_prog(struct __sk_buff *skb)
{
	__u32 len = skb->len;

	seen_max = cfg.max;
	seen_min = cfg.min;
	counter++;
	total_len += len;
	if (len < cfg.min || len > cfg.max) {
		stats++;
		return 1;
	}
	return 0;
}
