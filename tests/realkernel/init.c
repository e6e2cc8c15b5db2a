/*
 * vmapsim's real-kernel probe: the whole userspace of a tiny initramfs (PID 1).
 *
 * Mounts proc, sysfs and tracefs, sets kptr_restrict=1, arms the allocator trace
 * (vmalloc trace events, or kprobes on kernels without them), prints
 * /proc/vmallocinfo, loads the modules named on the kernel command line with
 * finit_module(2), prints every return code, the trace, the final vmallocinfo and
 * /proc/modules between "=== BEGIN/END <name>" markers, and powers off.
 *
 * Command line: vmapsim.mods=a.ko.xz,b.ko.xz   vmapsim.trace=events|kprobes
 *               vmapsim.dup=N (load the first module from N processes at once, process i pinned to CPU i)
 *               vmapsim.syscall=finit|init (init: pass the file's bytes to init_module(2), as kmod < 31 does)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define T "/sys/kernel/tracing/"

static void put(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, s, strlen(s)) < 0)
		printf("vmapsim-init: cannot write %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void dump(const char *path, const char *tag)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	printf("=== BEGIN %s\n", tag);
	fflush(stdout);
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, n, stdout);
	if (fd >= 0)
		close(fd);
	printf("=== END %s\n", tag);
	fflush(stdout);
}

static char *arg(const char *cmdline, const char *key)
{
	const char *p = strstr(cmdline, key);
	char *v;

	if (!p)
		return NULL;
	v = strdup(p + strlen(key));
	v[strcspn(v, " \n")] = 0;
	return v;
}

/* Load one module file; returns the syscall's result (errno in *err). */
static long load(const char *name, int use_init, int *err)
{
	char path[256];
	long rc;
	int fd;

	snprintf(path, sizeof(path), "/m/%s", name);
	fd = open(path, O_RDONLY);
	if (use_init) {
		struct stat st;
		char *buf;

		fstat(fd, &st);
		buf = malloc(st.st_size);
		if (read(fd, buf, st.st_size) != st.st_size)
			printf("vmapsim-init: short read of %s\n", path);
		rc = syscall(SYS_init_module, buf, (unsigned long)st.st_size, "");
		free(buf);
	} else {
		rc = syscall(SYS_finit_module, fd, "", strstr(name, ".ko.") ? 4 /* MODULE_INIT_COMPRESSED_FILE */ : 0);
	}
	*err = rc ? errno : 0;
	close(fd);
	return rc;
}

/* N processes, process i pinned to CPU i, released together through a pipe. */
static void duplicates(const char *name, int n, int use_init)
{
	int gate[2], i, err;
	pid_t pid;

	if (pipe(gate))
		return;
	for (i = 0; i < n; i++) {
		pid = fork();
		if (pid == 0) {
			cpu_set_t set;
			char c;
			long rc;

			CPU_ZERO(&set);
			CPU_SET(i, &set);
			sched_setaffinity(0, sizeof(set), &set);
			close(gate[1]);
			if (read(gate[0], &c, 1) < 0)
				_exit(1);
			rc = load(name, use_init, &err);
			printf("vmapsim-dup %s cpu=%d rc=%ld errno=%d\n", name, i, rc, err);
			fflush(stdout);
			_exit(0);
		}
	}
	close(gate[0]);
	sleep(1); /* let every process reach its read() of the gate */
	close(gate[1]);
	while (wait(NULL) > 0)
		;
}

int main(void)
{
	char cmdline[4096] = "";
	char *mods, *mode, *name, *dup, *sys_;
	int fd, use_init, err, fromboot;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL);
	put("/proc/sys/kernel/kptr_restrict", "1");
	fd = open("/proc/cmdline", O_RDONLY);
	if (fd >= 0) {
		read(fd, cmdline, sizeof(cmdline) - 1);
		close(fd);
	}
	mods = arg(cmdline, "vmapsim.mods=");
	mode = arg(cmdline, "vmapsim.trace=");
	dup = arg(cmdline, "vmapsim.dup=");
	sys_ = arg(cmdline, "vmapsim.syscall=");
	use_init = sys_ && !strcmp(sys_, "init");

	fromboot = arg(cmdline, "vmapsim.fromboot=") != NULL;
	if (!fromboot) {
		put(T "tracing_on", "0");
		put(T "buffer_size_kb", "16384");
	}
	if (mode && !strcmp(mode, "kprobes") && !fromboot) {
		put(T "kprobe_events", "p:vm_alloc alloc_vmap_area size=%di align=%si vstart=%dx vend=%cx\n");
		put(T "kprobe_events", "r:vm_alloc_ret alloc_vmap_area va_start=+0($retval):x64\n");
		put(T "kprobe_events", "p:vm_free free_vmap_area_noflush va_start=+0(%di):x64 va_end=+8(%di):x64\n");
		put(T "kprobe_events", "p:vm_purge __purge_vmap_area_lazy start=%di end=%si\n");
		put(T "events/kprobes/enable", "1");
	} else if (mode && !strcmp(mode, "kprobes")) {
		/* from boot: kprobe_event= on the command line defined and enabled them */
	} else {
		put(T "events/vmalloc/enable", "1");
	}
	dump("/proc/vmallocinfo", "vmallocinfo-start");
	put(T "tracing_on", "1");

	if (dup && mods) {
		duplicates(strtok(mods, ","), atoi(dup), use_init);
	} else {
		for (name = mods ? strtok(mods, ",") : NULL; name; name = strtok(NULL, ",")) {
			long rc = load(name, use_init, &err);

			printf("vmapsim-load %s rc=%ld errno=%d\n", name, rc, err);
		}
	}

	put(T "tracing_on", "0");
	dump(T "trace", "trace");
	dump("/proc/vmallocinfo", "vmallocinfo-end");
	dump("/proc/modules", "modules");
	fflush(stdout);
	/* let the serial port send everything before the machine goes away */
	tcdrain(STDOUT_FILENO);
	sleep(1);
	reboot(RB_POWER_OFF);
	return 0;
}
