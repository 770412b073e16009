// module-btf: CO-RE against types only a kernel module has. struct tun_file and struct tun_struct
// live in drivers/net/tun.c: no vmlinux BTF has them, only /sys/kernel/btf/tun once the module is
// loaded (split BTF on top of vmlinux's, CONFIG_DEBUG_INFO_BTF_MODULES). A kprobe on the module's
// tun_chr_ioctl follows file->private_data (a vmlinux type) to the tun_file and its tun_struct and
// reads what the agent's TUNSETIFF made: the device's flags, ifindex and name. tun_file's size and
// the offset of `detached` change between kernels (1728 bytes and 1440 on 6.1, 1920 and 1544 on
// 7.3); the kernel's type id of tun_struct is a module BTF id, numbered on from vmlinux's.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

// Local views of the module's types; the ___cm flavour keeps them apart from anything a header
// might declare, and CO-RE matches them by the name before it ("tun_file", "tun_struct").
struct tun_struct___cm {
	unsigned int numqueues;
	unsigned int flags;
	struct net_device *dev;
} __attribute__((preserve_access_index));

struct tun_file___cm {
	struct tun_struct___cm *tun;
	struct tun_struct___cm *detached;
} __attribute__((preserve_access_index));

const volatile int target_tgid = 0;

long hits = 0;
long tun_flags = -1;
long tun_numqueues = -1;
long tun_ifindex = -1;
char tun_name[16] = {};
long tun_file_size = -1;
long detached_offset = -1;
long tun_struct_btf_id = -1;
long tun_file_exists = -1;

SEC("kprobe/tun_chr_ioctl")
int BPF_KPROBE(on_tun_ioctl, struct file *file, unsigned int cmd)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	__sync_fetch_and_add(&hits, 1);
	tun_file_exists = bpf_core_type_exists(struct tun_file___cm);
	tun_file_size = bpf_core_type_size(struct tun_file___cm);
	detached_offset = bpf_core_field_offset(struct tun_file___cm, detached);
	tun_struct_btf_id = bpf_core_type_id_kernel(struct tun_struct___cm);

	struct tun_file___cm *tfile = BPF_CORE_READ(file, private_data);
	struct tun_struct___cm *tun = BPF_CORE_READ(tfile, tun);
	if (!tun)
		return 0; // TUNSETIFF: no device yet
	tun_flags = BPF_CORE_READ(tun, flags);
	tun_numqueues = BPF_CORE_READ(tun, numqueues);
	tun_ifindex = BPF_CORE_READ(tun, dev, ifindex);
	BPF_CORE_READ_STR_INTO(&tun_name, tun, dev, name);
	return 0;
}
