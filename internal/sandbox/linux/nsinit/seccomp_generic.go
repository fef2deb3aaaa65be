//go:build linux

package nsinit

// The syscall lists for the asm-generic numbering (include/uapi/asm-generic/
// unistd.h), which arm64 uses: the same syscalls as the amd64 lists, less
// those the generic table never had (open, stat, fork, poll, select,
// pipe, dup2, epoll_wait, the path calls without *at, arch_prctl, iopl,
// ioperm, modify_ldt, uselib, ...). C libraries and Go's runtime call the
// *at and p* variants there. They carry names, not only numbers, so a test
// on any architecture can check them against another source and report
// mistakes by name; no build tag, so that test runs on amd64 too.

type sysnr struct {
	nr   int
	name string
}

func nrs(l []sysnr) []int {
	out := make([]int, len(l))
	for i, s := range l {
		out[i] = s.nr
	}
	return out
}

// genericDenied get EPERM (see denied in seccomp_amd64.go for why).
var genericDenied = []sysnr{
	{40, "mount"}, {39, "umount2"}, {41, "pivot_root"}, {51, "chroot"}, {117, "ptrace"},
	{270, "process_vm_readv"}, {271, "process_vm_writev"}, {272, "kcmp"}, {438, "pidfd_getfd"},
	{104, "kexec_load"}, {294, "kexec_file_load"}, {105, "init_module"}, {273, "finit_module"},
	{106, "delete_module"}, {280, "bpf"}, {219, "keyctl"}, {217, "add_key"}, {218, "request_key"},
	{97, "unshare"}, {268, "setns"}, {241, "perf_event_open"}, {142, "reboot"}, {224, "swapon"},
	{225, "swapoff"}, {116, "syslog"}, {89, "acct"}, {170, "settimeofday"}, {112, "clock_settime"},
	{266, "clock_adjtime"}, {171, "adjtimex"}, {161, "sethostname"}, {162, "setdomainname"}, {60, "quotactl"},
	{18, "lookup_dcookie"}, {265, "open_by_handle_at"}, {264, "name_to_handle_at"}, {282, "userfaultfd"},
	{262, "fanotify_init"}, {442, "mount_setattr"}, {429, "move_mount"}, {428, "open_tree"}, {430, "fsopen"},
	{431, "fsconfig"}, {432, "fsmount"}, {433, "fspick"}, {58, "vhangup"}, {92, "personality"},
}

// genericAllowed is in the amd64 list's order (the most frequent first).
var genericAllowed = []sysnr{
	{63, "read"}, {64, "write"}, {98, "futex"}, {22, "epoll_pwait"}, {441, "epoll_pwait2"}, {21, "epoll_ctl"},
	{101, "nanosleep"}, {113, "clock_gettime"}, {115, "clock_nanosleep"}, {124, "sched_yield"},
	{207, "recvfrom"}, {206, "sendto"}, {212, "recvmsg"}, {211, "sendmsg"}, {139, "rt_sigreturn"},
	{135, "rt_sigprocmask"}, {134, "rt_sigaction"}, {222, "mmap"}, {215, "munmap"}, {226, "mprotect"},
	{233, "madvise"}, {214, "brk"}, {57, "close"}, {56, "openat"}, {79, "newfstatat"}, {80, "fstat"},
	{291, "statx"}, {62, "lseek"}, {61, "getdents64"}, {67, "pread64"}, {68, "pwrite64"}, {65, "readv"},
	{66, "writev"}, {69, "preadv"}, {70, "pwritev"}, {286, "preadv2"}, {287, "pwritev2"}, {25, "fcntl"},
	{29, "ioctl"}, {172, "getpid"}, {178, "gettid"}, {131, "tgkill"}, {130, "tkill"}, {129, "kill"},
	{73, "ppoll"}, {72, "pselect6"}, {202, "accept"}, {242, "accept4"}, {200, "bind"}, {203, "connect"},
	{201, "listen"}, {198, "socket"}, {199, "socketpair"}, {204, "getsockname"}, {205, "getpeername"},
	{209, "getsockopt"}, {208, "setsockopt"}, {210, "shutdown"}, {243, "recvmmsg"}, {269, "sendmmsg"},
	{71, "sendfile"}, {76, "splice"}, {77, "tee"}, {285, "copy_file_range"}, {48, "faccessat"},
	{439, "faccessat2"}, {78, "readlinkat"}, {17, "getcwd"}, {49, "chdir"}, {50, "fchdir"}, {34, "mkdirat"},
	{35, "unlinkat"}, {38, "renameat"}, {276, "renameat2"}, {37, "linkat"}, {36, "symlinkat"}, {52, "fchmod"},
	{53, "fchmodat"}, {55, "fchown"}, {54, "fchownat"}, {45, "truncate"}, {46, "ftruncate"}, {47, "fallocate"},
	{82, "fsync"}, {83, "fdatasync"}, {81, "sync"}, {267, "syncfs"}, {84, "sync_file_range"},
	{223, "fadvise64"}, {213, "readahead"}, {32, "flock"}, {166, "umask"}, {88, "utimensat"}, {33, "mknodat"},
	{43, "statfs"}, {44, "fstatfs"}, {8, "getxattr"}, {9, "lgetxattr"}, {10, "fgetxattr"}, {11, "listxattr"},
	{12, "llistxattr"}, {13, "flistxattr"}, {5, "setxattr"}, {6, "lsetxattr"}, {7, "fsetxattr"},
	{14, "removexattr"}, {15, "lremovexattr"}, {16, "fremovexattr"}, {23, "dup"}, {24, "dup3"}, {59, "pipe2"},
	{436, "close_range"}, {20, "epoll_create1"}, {19, "eventfd2"}, {74, "signalfd4"}, {85, "timerfd_create"},
	{86, "timerfd_settime"}, {87, "timerfd_gettime"}, {26, "inotify_init1"}, {27, "inotify_add_watch"},
	{28, "inotify_rm_watch"}, {279, "memfd_create"}, {221, "execve"}, {281, "execveat"}, {93, "exit"},
	{94, "exit_group"}, {260, "wait4"}, {95, "waitid"}, {434, "pidfd_open"}, {424, "pidfd_send_signal"},
	{136, "rt_sigpending"}, {133, "rt_sigsuspend"}, {137, "rt_sigtimedwait"}, {138, "rt_sigqueueinfo"},
	{240, "rt_tgsigqueueinfo"}, {132, "sigaltstack"}, {102, "getitimer"}, {103, "setitimer"},
	{107, "timer_create"}, {110, "timer_settime"}, {108, "timer_gettime"}, {109, "timer_getoverrun"},
	{111, "timer_delete"}, {114, "clock_getres"}, {169, "gettimeofday"}, {153, "times"},
	{128, "restart_syscall"}, {174, "getuid"}, {175, "geteuid"}, {176, "getgid"}, {177, "getegid"},
	{148, "getresuid"}, {150, "getresgid"}, {158, "getgroups"}, {146, "setuid"}, {144, "setgid"},
	{145, "setreuid"}, {143, "setregid"}, {147, "setresuid"}, {149, "setresgid"}, {159, "setgroups"},
	{151, "setfsuid"}, {152, "setfsgid"}, {90, "capget"}, {91, "capset"}, {173, "getppid"}, {155, "getpgid"},
	{154, "setpgid"}, {156, "getsid"}, {157, "setsid"}, {141, "getpriority"}, {140, "setpriority"},
	{163, "getrlimit"}, {164, "setrlimit"}, {261, "prlimit64"}, {165, "getrusage"}, {179, "sysinfo"},
	{160, "uname"}, {278, "getrandom"}, {168, "getcpu"}, {167, "prctl"}, {96, "set_tid_address"},
	{99, "set_robust_list"}, {100, "get_robust_list"}, {293, "rseq"}, {283, "membarrier"}, {216, "mremap"},
	{227, "msync"}, {232, "mincore"}, {228, "mlock"}, {284, "mlock2"}, {229, "munlock"}, {230, "mlockall"},
	{231, "munlockall"}, {234, "remap_file_pages"}, {236, "get_mempolicy"}, {237, "set_mempolicy"},
	{235, "mbind"}, {289, "pkey_alloc"}, {290, "pkey_free"}, {288, "pkey_mprotect"}, {123, "sched_getaffinity"},
	{122, "sched_setaffinity"}, {121, "sched_getparam"}, {118, "sched_setparam"}, {120, "sched_getscheduler"},
	{119, "sched_setscheduler"}, {125, "sched_get_priority_max"}, {126, "sched_get_priority_min"},
	{127, "sched_rr_get_interval"}, {275, "sched_getattr"}, {274, "sched_setattr"}, {31, "ioprio_get"},
	{30, "ioprio_set"}, {0, "io_setup"}, {1, "io_destroy"}, {2, "io_submit"}, {3, "io_cancel"},
	{4, "io_getevents"}, {292, "io_pgetevents"}, {194, "shmget"}, {196, "shmat"}, {197, "shmdt"},
	{195, "shmctl"}, {190, "semget"}, {193, "semop"}, {191, "semctl"}, {192, "semtimedop"}, {186, "msgget"},
	{189, "msgsnd"}, {188, "msgrcv"}, {187, "msgctl"}, {180, "mq_open"}, {181, "mq_unlink"},
	{182, "mq_timedsend"}, {183, "mq_timedreceive"}, {184, "mq_notify"}, {185, "mq_getsetattr"},
	{277, "seccomp"}, {437, "openat2"}, {449, "futex_waitv"},
}

// genericClone is clone's number: Filter inspects its flags.
const genericClone = 220

// SeccompSupported reports whether this architecture has syscall lists;
// where it does not, the filter kills every syscall and isolation must
// refuse to start.
func SeccompSupported() bool { return auditArch != 0 }
