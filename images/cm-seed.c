/*
 * cm-seed: credits the bytes of a file to the guest kernel's entropy pool (ioctl RNDADDENTROPY on
 * /dev/urandom), so the kernel's CRNG is ready at once. Run by images/init before node.
 *
 * Why: node's start-up asks OpenSSL to check that the CSPRNG is seeded, which calls getrandom(2);
 * in a fresh guest with no hardware RNG that blocks until the kernel has gathered entropy from
 * timer jitter, about 1.3 s under TCG on every boot. The bytes come from the host's own
 * randomness, written into the image when it is built (harness/images/initramfs.ts): the same
 * thing a bootloader seed or virtio-rng would give the guest. The file is deleted after use.
 *
 * Built on the host with clang (harness/images/seed.ts), linked against the glibc the image
 * already carries for node.
 */
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  struct {
    int entropy_count;
    int buf_size;
    unsigned char buf[64];
  } info;
  if (argc != 2) {
    fprintf(stderr, "usage: cm-seed <file of 32..64 random bytes>\n");
    return 2;
  }
  int in = open(argv[1], O_RDONLY);
  ssize_t n = in < 0 ? -1 : read(in, info.buf, sizeof info.buf);
  if (in >= 0) close(in);
  if (n < 32) {
    fprintf(stderr, "cm-seed: %s: expected 32 to 64 bytes of seed\n", argv[1]);
    return 1;
  }
  info.entropy_count = (int)n * 8;
  info.buf_size = (int)n;
  int fd = open("/dev/urandom", O_WRONLY);
  if (fd < 0 || ioctl(fd, RNDADDENTROPY, &info) < 0) {
    perror("cm-seed: RNDADDENTROPY /dev/urandom");
    return 1;
  }
  memset(&info, 0, sizeof info);
  close(fd);
  return 0;
}
