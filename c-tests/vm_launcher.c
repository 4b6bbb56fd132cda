/*
 * vm_launcher: end-to-end test driver for vnet's C API.
 *
 *   vm_launcher NETNS_PATH KERNEL INITRD PING_TARGETS [CONFIG_JSON]
 *
 * Calls vnet_setup on the pod netns, boots the test guest under qemu (TCG)
 * on the TAP fds vnet hands back (one virtio-net NIC per interface, with the
 * VM MAC from the result JSON), copies the guest's serial console to stdout
 * until "VNET-GUEST done", then tears vnet down.  Exit 0 only when setup and
 * teardown succeed and the guest finished.  This is test code: unlike the
 * library it may fork and exec programs.
 *
 * Environment (optional): VM_QEMU (qemu binary), VM_TIMEOUT (seconds, 120),
 * VM_APPEND (extra kernel command line, e.g. "vnet.ping_size=8000").
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vnet.h"

#define MAX_IFACES 16
#define MAX_QUEUES 16
#define MAX_ARGS 128
#define DONE_MARK "VNET-GUEST done"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A MAC goes into a qemu option string: accept only "xx:xx:xx:xx:xx:xx". */
static int valid_mac(const char *m)
{
	if (strlen(m) != 17)
		return 0;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? m[i] != ':' : !isxdigit((unsigned char)m[i]))
			return 0;
	}
	return 1;
}

/*
 * The n-th "vm_mac" value inside "vnet": {"interfaces": [...]}.  A string
 * search is enough for the JSON vnet emits; returns 0 on success.
 */
static int vm_mac_at(const char *json, unsigned n, char out[18])
{
	const char *p = strstr(json, "\"vnet\"");
	if (!p || !(p = strstr(p, "\"interfaces\"")))
		return -1;
	for (unsigned i = 0; i <= n; i++) {
		if (!(p = strstr(p, "\"vm_mac\"")))
			return -1;
		p += strlen("\"vm_mac\"");
	}
	while (isspace((unsigned char)*p) || *p == ':')
		p++;
	if (*p++ != '"')
		return -1;
	const char *end = strchr(p, '"');
	if (!end || end - p != 17)
		return -1;
	memcpy(out, p, 17);
	out[17] = '\0';
	return valid_mac(out) ? 0 : -1;
}

/* dup() without CLOEXEC so qemu inherits it. */
static int inheritable_dup(int fd)
{
	int d = dup(fd);
	if (d < 0)
		return -1;
	int fl = fcntl(d, F_GETFD);
	if (fl < 0 || fcntl(d, F_SETFD, fl & ~FD_CLOEXEC) < 0) {
		close(d);
		return -1;
	}
	return d;
}

struct vm {
	char *args[MAX_ARGS];
	int nargs;
	int fds[MAX_IFACES * MAX_QUEUES];
	int nfds;
	int oom; /* an argument could not be built */
};

static int push(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int push(struct vm *vm, const char *fmt, ...)
{
	va_list ap;
	char *s;
	if (vm->nargs >= MAX_ARGS - 1) {
		vm->oom = 1;
		return -1;
	}
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0) {
		vm->oom = 1;
		return -1;
	}
	vm->args[vm->nargs++] = s;
	vm->args[vm->nargs] = NULL;
	return 0;
}

/* Build the qemu command line: one tap netdev + virtio-net device per iface. */
static int build_vm(struct vm *vm, const vnet_handle *h, const char *json, const char *kernel,
		    const char *initrd, const char *pings)
{
	const char *qemu = getenv("VM_QEMU") ? getenv("VM_QEMU") : "qemu-system-x86_64";
	const char *extra = getenv("VM_APPEND") ? getenv("VM_APPEND") : "";
	uint32_t n = vnet_interface_count(h);

	if (n == 0 || n > MAX_IFACES) {
		fprintf(stderr, "vm_launcher: interface count %u out of range\n", n);
		return -1;
	}
	push(vm, "%s", qemu);
	push(vm, "-accel");
	push(vm, "tcg");
	push(vm, "-m");
	push(vm, "256");
	push(vm, "-nographic");
	push(vm, "-no-reboot");
	push(vm, "-kernel");
	push(vm, "%s", kernel);
	push(vm, "-initrd");
	push(vm, "%s", initrd);
	push(vm, "-append");
	push(vm, "console=ttyS0 quiet panic=-1 vnet.ping=%s %s", pings, extra);
	for (uint32_t i = 0; i < n; i++) {
		char mac[18];
		char fdlist[MAX_QUEUES * 12] = "";
		uint32_t q;

		if (vm_mac_at(json, i, mac) != 0) {
			fprintf(stderr, "vm_launcher: no valid vm_mac for interface %u\n", i);
			return -1;
		}
		for (q = 0; q < MAX_QUEUES; q++) {
			int fd = vnet_tap_fd(h, i, q);
			if (fd < 0)
				break;
			int d = inheritable_dup(fd);
			if (d < 0) {
				perror("vm_launcher: dup tap fd");
				return -1;
			}
			vm->fds[vm->nfds++] = d;
			size_t len = strlen(fdlist);
			snprintf(fdlist + len, sizeof(fdlist) - len, "%s%d", q ? ":" : "", d);
		}
		if (q == 0) {
			fprintf(stderr, "vm_launcher: interface %u has no tap fd\n", i);
			return -1;
		}
		push(vm, "-netdev");
		if (q == 1)
			push(vm, "tap,id=n%u,fd=%s", i, fdlist);
		else
			push(vm, "tap,id=n%u,fds=%s", i, fdlist);
		push(vm, "-device");
		if (q == 1)
			push(vm, "virtio-net-pci,netdev=n%u,mac=%s", i, mac);
		else
			push(vm, "virtio-net-pci,netdev=n%u,mac=%s,mq=on,vectors=%u", i, mac, 2 * q + 2);
		fprintf(stderr, "vm_launcher: iface %u mac %s tap fds %s\n", i, mac, fdlist);
	}
	return vm->oom ? -1 : 0;
}

/* Copy qemu's output to stdout; returns 1 once the done mark was seen. */
static int pump(int fd, char *line, size_t *len, size_t cap)
{
	char buf[4096];
	int done = 0;
	ssize_t r = read(fd, buf, sizeof(buf));

	if (r <= 0)
		return r == 0 ? -1 : 0;
	fwrite(buf, 1, (size_t)r, stdout);
	fflush(stdout);
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] == '\n' || *len + 1 >= cap) {
			line[*len] = '\0';
			if (strstr(line, DONE_MARK))
				done = 1;
			*len = 0;
		} else {
			line[(*len)++] = buf[i];
		}
	}
	line[*len] = '\0';
	if (strstr(line, DONE_MARK))
		done = 1;
	return done;
}

/* Run qemu; returns 0 when the guest reported done and qemu exited 0. */
static int run_vm(struct vm *vm, double timeout)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		perror("vm_launcher: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("vm_launcher: fork");
		return -1;
	}
	if (pid == 0) {
		/* qemu must not outlive us if the test is killed. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvp(vm->args[0], vm->args);
		perror("vm_launcher: exec qemu");
		_exit(127);
	}
	close(pfd[1]);
	/* qemu holds its own copies now. */
	for (int i = 0; i < vm->nfds; i++)
		close(vm->fds[i]);
	vm->nfds = 0;

	double start = now_s(), deadline = start + timeout, done_at = 0;
	char line[1024];
	size_t len = 0;
	int done = 0, eof = 0, killed = 0;

	while (!eof) {
		double now = now_s();
		if (!killed && (g_stop || now > deadline || (done && now > done_at + 10))) {
			fprintf(stderr, "\nvm_launcher: %s; killing qemu\n",
				g_stop ? "interrupted" : done ? "qemu did not exit after done" : "timeout");
			kill(pid, SIGKILL);
			killed = 1;
		}
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int r = poll(&p, 1, 500);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0) {
			int d = pump(pfd[0], line, &len, sizeof(line));
			if (d < 0)
				eof = 1;
			else if (d && !done) {
				done = 1;
				done_at = now_s();
			}
		}
	}
	close(pfd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int ok = done && !killed && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	fprintf(stderr, "\nvm_launcher: qemu %s %d after %.1f s, guest %s\n",
		WIFEXITED(status) ? "exited" : "killed by signal",
		WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), now_s() - start,
		done ? "done" : "NOT done");
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: %s NETNS_PATH KERNEL INITRD PING_TARGETS [CONFIG_JSON]\n",
			argv[0]);
		return 2;
	}
	const char *config = argc == 6 && argv[5][0] ? argv[5] : NULL;
	double timeout = getenv("VM_TIMEOUT") ? atof(getenv("VM_TIMEOUT")) : 120;

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	vnet_handle *h = NULL;
	char *err = NULL, *json = NULL;
	double t0 = now_s();
	vnet_status st = vnet_setup(argv[1], config, &h, &err);
	if (st != VNET_OK) {
		fprintf(stderr, "vm_launcher: vnet_setup: %s: %s\n", vnet_status_str(st),
			err ? err : "(no detail)");
		vnet_string_free(err);
		return 1;
	}
	fprintf(stderr, "vm_launcher: vnet_setup ok in %.1f ms\n", (now_s() - t0) * 1e3);

	int rc = 0;
	struct vm vm = { .nargs = 0 };
	st = vnet_result_json(h, &json, &err);
	if (st != VNET_OK) {
		fprintf(stderr, "vm_launcher: vnet_result_json: %s: %s\n", vnet_status_str(st),
			err ? err : "(no detail)");
		vnet_string_free(err);
		err = NULL;
		rc = 1;
	} else {
		printf("VNET-HOST result %s\n", json);
		fflush(stdout);
		if (build_vm(&vm, h, json, argv[2], argv[3], argv[4]) != 0 ||
		    run_vm(&vm, timeout) != 0)
			rc = 1;
	}
	for (int i = 0; i < vm.nfds; i++)
		close(vm.fds[i]);
	for (int i = 0; i < vm.nargs; i++)
		free(vm.args[i]);
	vnet_string_free(json);

	t0 = now_s();
	st = vnet_teardown(h, &err);
	if (st != VNET_OK) {
		fprintf(stderr, "vm_launcher: vnet_teardown: %s: %s\n", vnet_status_str(st),
			err ? err : "(no detail)");
		vnet_string_free(err);
		rc = 1;
	} else {
		fprintf(stderr, "vm_launcher: vnet_teardown ok in %.1f ms\n", (now_s() - t0) * 1e3);
	}
	vnet_free(h);
	return rc;
}
