//go:build linux && cgo

package nsinit

/*
#cgo CFLAGS: -O2 -Wall -Wno-unused-function

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// The sandbox init in C. The backend re-executes the Kiln binary with
// argv[0] "kiln-sandbox-init" and only "_KILN_SANDBOX_INIT=1" in its
// environment; this constructor runs before the Go runtime starts,
// recognises that and never returns, so a pooled init costs an exec and a
// few mounts instead of a Go runtime and the whole binary's package
// initialisation, and a sandbox's pid 1 costs tens of KiB. It does what
// init_linux.go does for non-cgo builds, step by step as the backend's Go
// code lists them (wire.go): it makes no decision of its own. Every
// failure reports "error <errno> <message>" and exits: no step is skipped.

// For C libraries older than the kernel interfaces used here.
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define KI_ARG0 "kiln-sandbox-init"
#define KI_ENV "_KILN_SANDBOX_INIT=1"
#define KI_STATUS 3
#define KI_CONFIG 4
#define KI_MAXMSG (1 << 20)
#define KI_MAXFDS 32
#define KI_MAXARGS 4096

static char *ki_buf;
static char ki_marks[512];
static size_t ki_marks_len;
static volatile pid_t ki_runtime;

// The runtime's process made ahead (op 'K'): forked while the init waits
// in the pool, already in its cgroup namespace and under the seccomp
// filter (loading a filter costs a BPF compile: ~0.4 ms off the cold
// start), it waits for its stdio and then execs what the claim says.
static struct sock_fprog ki_pre_prog;
static pid_t ki_pre_pid = -1;
static int ki_pre_sock = -1, ki_pre_err = -1;
// The claim and the message buffer are shared with that process.
struct ki_claim;
static struct ki_claim *ki_claimp;

static void ki_write(const char *s, size_t n) {
	while (n > 0) {
		ssize_t w = write(KI_STATUS, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void ki_fail(int err, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void ki_fail(int err, const char *fmt, ...) {
	char msg[768], line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	// The backend adds the errno's text.
	int n = snprintf(line, sizeof line, "error %d %s\n", err > 0 ? err : 0, msg);
	if (n > 0)
		ki_write(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
	_exit(126);
}

static void ki_mark(const char *name) {
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return;
	int n = snprintf(ki_marks + ki_marks_len, sizeof ki_marks - ki_marks_len, " %s=%lld", name,
			 (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	if (n > 0 && ki_marks_len + (size_t)n < sizeof ki_marks)
		ki_marks_len += (size_t)n;
}

// A message cursor; every field must end inside the message.
struct ki_cur {
	char *p, *end;
};

static char *ki_str(struct ki_cur *c) {
	char *s = c->p;
	char *z = memchr(s, 0, (size_t)(c->end - s));
	if (z == NULL)
		ki_fail(0, "config: truncated field");
	c->p = z + 1;
	return s;
}

static long ki_num(struct ki_cur *c, long lo, long hi) {
	char *s = ki_str(c), *e = NULL;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno != 0 || e == s || *e != '\0' || v < lo || v > hi)
		ki_fail(0, "config: bad number %.40s", s);
	return v;
}

// ki_recv reads one message; fds gets what came with it (close-on-exec).
static ssize_t ki_recv(int *fds, int *nfds) {
	char cbuf[CMSG_SPACE(sizeof(int) * KI_MAXFDS)];
	struct iovec iov = {.iov_base = ki_buf, .iov_len = KI_MAXMSG};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	ssize_t n;
	do
		n = recvmsg(KI_CONFIG, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		ki_fail(errno, "receive config");
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		ki_fail(0, "receive config: message truncated");
	*nfds = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
			if (*nfds >= KI_MAXFDS)
				ki_fail(0, "receive config: too many descriptors");
			fds[(*nfds)++] = fd;
		}
	}
	return n;
}

static void ki_mkdirs(char *path, mode_t mode) {
	// path is writable scratch: each '/' is cut in turn.
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(path, mode) != 0 && errno != EEXIST)
				ki_fail(errno, "mkdir %s", path);
			*p = saved;
			if (saved == '\0')
				return;
		}
	}
}

static void ki_parent_dirs(const char *path) {
	char tmp[4096];
	if (strlen(path) >= sizeof tmp)
		ki_fail(ENAMETOOLONG, "path");
	strcpy(tmp, path);
	char *slash = strrchr(tmp, '/');
	if (slash != NULL && slash != tmp) {
		*slash = '\0';
		ki_mkdirs(tmp, 0755);
	}
}

// ki_target makes a mount point: a directory, or an empty file.
static void ki_target(const char *dst, int dir) {
	char tmp[4096];
	if (strlen(dst) >= sizeof tmp)
		ki_fail(ENAMETOOLONG, "mount point");
	if (dir) {
		strcpy(tmp, dst);
		ki_mkdirs(tmp, 0755);
		return;
	}
	ki_parent_dirs(dst);
	int fd = open(dst, O_CREAT | O_RDONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		ki_fail(errno, "create %s", dst);
	close(fd);
}

// ki_bind_ro binds src on dst read-only, nosuid, nodev; the remount
// repeats the flags a user namespace cannot drop from the source.
static void ki_bind_ro(const char *src, const char *dst, int dir) {
	ki_target(dst, dir);
	if (mount(src, dst, NULL, MS_BIND, NULL) != 0)
		ki_fail(errno, "bind %s", src);
	struct statfs st;
	if (statfs(dst, &st) != 0)
		ki_fail(errno, "statfs %s", dst);
	unsigned long fl = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;
	if (st.f_flags & ST_NOEXEC)
		fl |= MS_NOEXEC;
	if (st.f_flags & ST_NOATIME)
		fl |= MS_NOATIME;
	if (st.f_flags & ST_NODIRATIME)
		fl |= MS_NODIRATIME;
	if (st.f_flags & ST_RELATIME)
		fl |= MS_RELATIME;
	if (mount(NULL, dst, NULL, fl, NULL) != 0)
		ki_fail(errno, "remount %s read-only", dst);
}

static void ki_drop_caps(void) {
	for (int c = 0; c <= 63; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
			ki_fail(errno, "drop capability %d", c);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		ki_fail(errno, "clear ambient capabilities");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		ki_fail(errno, "no_new_privs");
}

static void ki_pre_child(int sock, int errw) __attribute__((noreturn));

// ki_prefork starts the runtime's process and waits until it is armed.
static void ki_prefork(void) {
	if (ki_pre_prog.filter == NULL || ki_pre_pid > 0)
		ki_fail(0, "config: prefork without a filter, or twice");
	int sp[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0)
		ki_fail(errno, "prefork socket");
	if (pipe2(ep, O_CLOEXEC) != 0)
		ki_fail(errno, "prefork pipe");
	pid_t pid = fork();
	if (pid < 0)
		ki_fail(errno, "prefork");
	if (pid == 0) {
		close(sp[0]);
		close(ep[0]);
		ki_pre_child(sp[1], ep[1]);
	}
	close(sp[1]);
	close(ep[1]);
	char a = 0;
	ssize_t r;
	do
		r = read(sp[0], &a, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1 || a != 'A') {
		int st;
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		ki_fail(0, "prefork: the runtime's process did not arm");
	}
	ki_pre_pid = pid;
	ki_pre_sock = sp[0];
	ki_pre_err = ep[0];
}

// ki_prepare carries out the first message: the base root, pivoted into.
static void ki_prepare(struct ki_cur *c) {
	if (strcmp(ki_str(c), "KP1") != 0)
		ki_fail(0, "config: not a prepare message");
	while (c->p < c->end) {
		char *op = ki_str(c);
		if (op[0] == '\0' || op[1] != '\0')
			ki_fail(0, "config: bad step");
		switch (op[0]) {
		case 'S':
			if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
				ki_fail(errno, "make mounts private");
			break;
		case 'T': {
			char *dst = ki_str(c), *data = ki_str(c);
			long fl = ki_num(c, 0, 1L << 30);
			ki_target(dst, 1);
			if (mount("tmpfs", dst, "tmpfs", (unsigned long)fl, data) != 0)
				ki_fail(errno, "mount tmpfs %s", dst);
			break;
		}
		case 'B': {
			char *src = ki_str(c), *dst = ki_str(c), *kind = ki_str(c);
			ki_bind_ro(src, dst, kind[0] == 'd');
			break;
		}
		case 'V': {
			char *src = ki_str(c), *dst = ki_str(c);
			int fd = open(dst, O_CREAT | O_RDONLY | O_CLOEXEC, 0666);
			if (fd < 0)
				ki_fail(errno, "create %s", dst);
			close(fd);
			if (mount(src, dst, NULL, MS_BIND, NULL) != 0)
				ki_fail(errno, "bind %s", src);
			break;
		}
		case 'L': {
			char *target = ki_str(c), *path = ki_str(c);
			if (symlink(target, path) != 0)
				ki_fail(errno, "symlink %s", path);
			break;
		}
		case 'M': {
			char *path = ki_str(c);
			long mode = ki_num(c, 0, 07777);
			if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST)
				ki_fail(errno, "mkdir %s", path);
			break;
		}
		case 'W': {
			char *path = ki_str(c), *body = ki_str(c);
			int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
			if (fd < 0)
				ki_fail(errno, "create %s", path);
			size_t n = strlen(body);
			while (n > 0) {
				ssize_t w = write(fd, body, n);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					ki_fail(errno, "write %s", path);
				body += w;
				n -= (size_t)w;
			}
			if (close(fd) != 0)
				ki_fail(errno, "write %s", path);
			break;
		}
		case 'P': {
			char *dst = ki_str(c);
			if (mkdir(dst, 0555) != 0)
				ki_fail(errno, "mkdir %s", dst);
			if (mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
				ki_fail(errno, "mount proc");
			break;
		}
		case 'H': {
			char *h = ki_str(c);
			if (sethostname(h, strlen(h)) != 0)
				ki_fail(errno, "sethostname");
			break;
		}
		case 'N': {
			long n = ki_num(c, 1, 1L << 20);
			struct rlimit rl = {.rlim_cur = (rlim_t)n, .rlim_max = (rlim_t)n};
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				ki_fail(errno, "rlimit");
			break;
		}
		case 'R': {
			// pivot_root(".", ".") stacks the old root under the new one;
			// detaching it leaves nothing of the host's tree reachable.
			char *r = ki_str(c);
			if (chdir(r) != 0)
				ki_fail(errno, "chdir %s", r);
			if (syscall(SYS_pivot_root, ".", ".") != 0)
				ki_fail(errno, "pivot_root");
			if (umount2(".", MNT_DETACH) != 0)
				ki_fail(errno, "detach old root");
			if (chdir("/") != 0)
				ki_fail(errno, "chdir /");
			break;
		}
		case 'C':
			ki_drop_caps();
			break;
		case 'F': {
			long n = ki_num(c, 8, 4096 * 8);
			if (n % 8 != 0 || c->end - c->p < n)
				ki_fail(0, "config: bad filter");
			void *f = malloc((size_t)n);
			if (f == NULL)
				ki_fail(ENOMEM, "filter");
			memcpy(f, c->p, (size_t)n);
			ki_pre_prog.len = (unsigned short)(n / 8);
			ki_pre_prog.filter = f;
			c->p += n;
			break;
		}
		case 'K':
			ki_prefork();
			break;
		default:
			ki_fail(0, "config: unknown step %c", op[0]);
		}
	}
}

// The sandbox as the second message describes it.
struct ki_claim {
	char *argv[KI_MAXARGS + 1];
	char *envp[KI_MAXARGS + 1];
	char *dir;
	char *tmp;
	uid_t uid;
	gid_t gid;
	struct sock_fprog prog;
};

// ki_pre_child is the runtime's process until its exec. It reports to
// nobody but the init: any failure before its sandbox arrives just exits
// (the init then fails); after, its errno goes to errw.
static void ki_pre_child(int sock, int errw) {
	// Its own cgroup namespace (the init is in its sandbox's cgroup
	// already, which the backend renames when claimed), its own process
	// group, death with pid 1, then the filter: from here on it can do no
	// more than the runtime will.
	if (unshare(CLONE_NEWCGROUP) != 0 || setpgid(0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
	    getppid() != 1)
		_exit(126);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &ki_pre_prog) != 0)
		_exit(126);
	if (write(sock, "A", 1) != 1)
		_exit(126);
	char g = 0;
	char cbuf[CMSG_SPACE(sizeof(int) * 3)];
	struct iovec iov = {.iov_base = &g, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != 1 || g != 'G')
		_exit(0); // the init went away or gave up on this sandbox
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	if (cm == NULL || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int) * 3) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		_exit(126);
	int fds[3];
	memcpy(fds, CMSG_DATA(cm), sizeof fds);
	int err = 0;
	for (int i = 0; i < 3 && err == 0; i++)
		if (fds[i] != i && dup3(fds[i], i, 0) != i)
			err = errno;
	// Nothing else it holds (the init's status pipe, binary, sockets)
	// may reach the runtime.
	if (err == 0 && syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		err = errno;
	struct ki_claim *k = ki_claimp;
	if (err == 0 && (setgroups(0, NULL) != 0 || setresgid(k->gid, k->gid, k->gid) != 0 ||
			 setresuid(k->uid, k->uid, k->uid) != 0 || chdir(k->dir) != 0))
		err = errno ? errno : EPERM;
	if (err == 0) {
		execve(k->argv[0], k->argv, k->envp);
		err = errno ? errno : EPERM;
	}
	ssize_t w;
	do
		w = write(errw, &err, sizeof err);
	while (w < 0 && errno == EINTR);
	_exit(127);
}

static void ki_list(struct ki_cur *c, char **out) {
	long n = ki_num(c, 0, KI_MAXARGS);
	for (long i = 0; i < n; i++)
		out[i] = ki_str(c);
	out[n] = NULL;
}

// ki_claim_parse reads the second message. With attach, it also attaches
// the function's mounts (on the pivoted root) as it meets them; ki_run
// parses once without, to refuse a bad message before changing anything.
static void ki_claim_parse(struct ki_cur *c, struct ki_claim *k, int *fds, int nfds, int attach) {
	if (strcmp(ki_str(c), "KC1") != 0)
		ki_fail(0, "config: not a claim message");
	int have_argv = 0, have_prog = 0;
	k->dir = "/";
	k->tmp = NULL;
	k->uid = (uid_t)-1;
	while (c->p < c->end) {
		char *op = ki_str(c);
		if (op[0] == '\0' || op[1] != '\0')
			ki_fail(0, "config: bad field");
		switch (op[0]) {
		case 'A':
			ki_list(c, k->argv);
			have_argv = k->argv[0] != NULL && k->argv[0][0] == '/';
			break;
		case 'E':
			ki_list(c, k->envp);
			break;
		case 'D':
			k->dir = ki_str(c);
			break;
		case 'T':
			k->tmp = ki_str(c);
			break;
		case 'm': {
			long idx = ki_num(c, 3, KI_MAXFDS - 1);
			char *dst = ki_str(c), *kind = ki_str(c);
			if (idx >= nfds)
				ki_fail(0, "mount %s: descriptor %ld not sent", dst, idx);
			if (dst[0] != '/' || dst[1] == '\0')
				ki_fail(0, "mount %s: bad target", dst);
			if (attach) {
				ki_target(dst, kind[0] == 'd');
				if (syscall(SYS_move_mount, fds[idx], "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) != 0)
					ki_fail(errno, "attach %s", dst);
				close(fds[idx]);
				fds[idx] = -1;
			}
			break;
		}
		case 'U':
			k->uid = (uid_t)ki_num(c, 1, 65535);
			k->gid = (gid_t)ki_num(c, 1, 65535);
			break;
		case 'F': {
			long n = ki_num(c, 8, 4096 * 8);
			if (n % 8 != 0 || c->end - c->p < n)
				ki_fail(0, "config: bad filter");
			k->prog.len = (unsigned short)(n / 8);
			k->prog.filter = (struct sock_filter *)(void *)c->p;
			c->p += n;
			have_prog = 1;
			break;
		}
		default:
			ki_fail(0, "config: unknown field %c", op[0]);
		}
	}
	if (!have_argv || !have_prog || k->uid == (uid_t)-1 || k->tmp == NULL)
		ki_fail(0, "config: claim without argv, filter, user or /tmp");
}

static void ki_forward(int sig) {
	int saved = errno;
	if (ki_runtime > 0)
		kill(ki_runtime, sig);
	errno = saved;
}

static void ki_report(const char *word, int n) {
	char line[48];
	int len = snprintf(line, sizeof line, "%s %d\n", word, n);
	if (len > 0 && (size_t)len < sizeof line)
		ki_write(line, (size_t)len);
}

// ki_supervise is pid 1's life once the runtime runs: forward signals,
// reap every child, report the runtime's end and exit with it (the kernel
// then kills the rest of the namespace).
static void ki_supervise(void) __attribute__((noreturn));
static void ki_supervise(void) {
	static const int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = ki_forward;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
		sigaction(fwd[i], &sa, NULL);
	for (;;) {
		int st = 0;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			ki_report("exit", 127);
			_exit(127);
		}
		if (p != ki_runtime)
			continue;
		if (WIFSIGNALED(st)) {
			ki_report("signal", WTERMSIG(st));
			_exit(128 + WTERMSIG(st));
		}
		if (WIFEXITED(st)) {
			ki_report("exit", WEXITSTATUS(st));
			_exit(WEXITSTATUS(st));
		}
	}
}

// ki_hand_over gives the runtime's process made ahead its stdio, which
// tells it to exec the claim (in shared memory, complete by now), and
// waits for the exec: end of file on the error pipe, or an errno.
static pid_t ki_hand_over(struct ki_claim *k) {
	int std[3] = {0, 1, 2};
	char cbuf[CMSG_SPACE(sizeof std)];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = {.iov_base = "G", .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof std);
	memcpy(CMSG_DATA(cm), std, sizeof std);
	ssize_t w;
	do
		w = sendmsg(ki_pre_sock, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	int serr = errno;
	int cerr = 0;
	ssize_t r = 0;
	if (w == 1) {
		do
			r = read(ki_pre_err, &cerr, sizeof cerr);
		while (r < 0 && errno == EINTR);
	}
	if (w != 1 || r != 0) {
		int st;
		kill(ki_pre_pid, SIGKILL);
		while (waitpid(ki_pre_pid, &st, 0) < 0 && errno == EINTR)
			;
		if (w != 1)
			ki_fail(serr, "hand over to the runtime's process");
		ki_fail(r == (ssize_t)sizeof cerr ? cerr : EIO, "start %s", k->argv[0]);
	}
	close(ki_pre_sock);
	close(ki_pre_err);
	return ki_pre_pid;
}

static void ki_run(void) __attribute__((noreturn));
static void ki_run(void) {
	ki_write("hello c\n", 8);
	// Shared, so a runtime process made ahead reads the claim too.
	size_t shsz = sizeof(struct ki_claim) + KI_MAXMSG;
	void *sh = mmap(NULL, shsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		ki_fail(errno, "config buffer");
	ki_claimp = sh;
	ki_buf = (char *)sh + sizeof(struct ki_claim);
	int fds[KI_MAXFDS], nfds;

	// The backend-wide part, built while the init waits in the pool.
	ssize_t n = ki_recv(fds, &nfds);
	if (n == 0 && nfds == 0)
		_exit(0); // the backend closed without using this init
	if (nfds != 0)
		ki_fail(0, "receive config: descriptors with the prepare message");
	struct ki_cur c = {ki_buf, ki_buf + n};
	ki_prepare(&c);
	ki_write("ready\n", 6);

	// The sandbox's own part.
	n = ki_recv(fds, &nfds);
	if (n == 0 && nfds == 0)
		_exit(0);
	ki_mark("wake");
	close(KI_CONFIG);
	if (nfds < 3)
		ki_fail(0, "receive config: %d descriptors, want stdio and mounts", nfds);
	for (int i = 0; i < 3; i++) {
		if (fds[i] != i) {
			if (dup3(fds[i], i, 0) != i)
				ki_fail(errno, "stdio");
			close(fds[i]);
		}
		fds[i] = -1;
	}
	struct ki_claim *k = ki_claimp;
	struct ki_cur cc = {ki_buf, ki_buf + n};
	ki_claim_parse(&cc, k, fds, nfds, 0); // validate before changing anything
	// The cgroup namespace is made now so that its root is the sandbox's
	// cgroup, which the init is in by now. A runtime's process made ahead
	// has its own already, and pid 1's shows to nobody else.
	if (ki_pre_pid <= 0) {
		if (unshare(CLONE_NEWCGROUP) != 0)
			ki_fail(errno, "unshare cgroup");
		ki_mark("cgroupns");
	}
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, k->tmp) != 0)
		ki_fail(errno, "mount tmpfs /tmp");
	cc.p = ki_buf;
	ki_claim_parse(&cc, k, fds, nfds, 1);
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
		ki_fail(errno, "remount root read-only");
	ki_mark("mounts");
	pid_t pid;
	if (ki_pre_pid > 0) {
		pid = ki_hand_over(k);
		goto started;
	}
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &k->prog) != 0)
		ki_fail(errno, "seccomp: load filter of %u instructions", k->prog.len);
	ki_mark("seccomp");
	// Nothing the init holds (its own binary, mount sources, the status
	// pipe) may reach the runtime.
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		ki_fail(errno, "close_range");
	// vfork: no page tables are copied and this process waits until the
	// child has exec'd or failed. The child shares this memory, so it
	// uses raw syscalls only and leaves its errno in cerr.
	static volatile int cerr;
	cerr = 0;
	pid = vfork();
	if (pid < 0)
		ki_fail(errno, "fork");
	if (pid == 0) {
		// The runtime: its own process group, dies with pid 1, the
		// sandbox user without groups, default signal mask, then exec.
		if (syscall(SYS_setpgid, 0, 0) != 0 || syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
		    syscall(SYS_getppid) != 1 || syscall(SYS_setgroups, 0, NULL) != 0 ||
		    syscall(SYS_setresgid, k->gid, k->gid, k->gid) != 0 || syscall(SYS_setresuid, k->uid, k->uid, k->uid) != 0 ||
		    syscall(SYS_chdir, k->dir) != 0) {
			cerr = errno ? errno : EPERM;
			syscall(SYS_exit, 127);
		}
		syscall(SYS_execve, k->argv[0], k->argv, k->envp);
		cerr = errno ? errno : EPERM;
		syscall(SYS_exit, 127);
	}
	if (cerr != 0) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		ki_fail(cerr, "start %s", k->argv[0]);
	}
started:
	ki_runtime = pid;
	ki_mark("exec");
	{
		char line[640];
		int len = snprintf(line, sizeof line, "ok %d%s\n", (int)pid, ki_marks);
		if (len > 0 && (size_t)len < sizeof line)
			ki_write(line, (size_t)len);
	}
	// pid 1 too runs under the filter; with a runtime made ahead it loads
	// it only now, after the runtime is on its way.
	if (ki_pre_pid > 0 && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &k->prog) != 0) {
		kill(pid, SIGKILL);
		ki_report("exit", 125);
		_exit(125);
	}
	uid_t ruid = k->uid;
	munmap(sh, shsz);
	ki_buf = NULL;
	ki_claimp = NULL;
	// pid 1 keeps real and saved uid 0 and takes the runtime's as its
	// effective one: it may signal the runtime, while the runtime, whose
	// uids are all 993, may not signal, trace or read pid 1 (the kernel
	// compares them with pid 1's real and saved uid). Then no capability
	// stays, effective or permitted.
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	if (setresuid(0, ruid, 0) != 0 || syscall(SYS_capset, &hdr, data) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		kill(pid, SIGKILL);
		ki_report("exit", 125);
		_exit(125);
	}
	ki_supervise();
}

__attribute__((constructor)) static void kiln_sandbox_init(int argc, char **argv, char **envp) {
	if (argc != 1 || argv == NULL || argv[0] == NULL || strcmp(argv[0], KI_ARG0) != 0)
		return;
	if (envp == NULL || envp[0] == NULL || strcmp(envp[0], KI_ENV) != 0 || envp[1] != NULL)
		return;
	// From here on this process is a sandbox's init and never returns to Go.
	if (getpid() != 1)
		_exit(125);
	ki_run();
}
*/
import "C"

// SmallSupervisor reports whether an isolated sandbox's init is the small C
// init (cgo builds; this file) rather than the Go one.
const SmallSupervisor = true
