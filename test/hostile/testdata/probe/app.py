# A hostile function: every operation is an attack the sandbox must stop.
import ctypes
import errno
import os
import socket
import subprocess
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)


def err_name(n):
    return errno.errorcode.get(n, str(n))


def try_read(path):
    try:
        with open(path, "rb") as f:
            f.read(64)
        return "READ"
    except OSError as e:
        return err_name(e.errno)


def try_write(path):
    try:
        with open(path, "wb") as f:
            f.write(b"x")
        return "WRITTEN"
    except OSError as e:
        return err_name(e.errno)


def call(fn):
    ctypes.set_errno(0)
    r = fn()
    return "ALLOWED" if r != -1 else err_name(ctypes.get_errno())


def connect(host, port, timeout=1):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "CONNECTED"
    except socket.timeout:
        return "TIMEOUT"
    except OSError as e:
        return err_name(e.errno)
    finally:
        s.close()


def probe(event):
    r = {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "hostname": socket.gethostname()}
    r["shadow"] = try_read("/etc/shadow")
    r["host_passwd_root"] = "root:x:0:0:root:/root:/bin/bash" in open("/etc/passwd").read()
    r["datadir"] = try_read(event["datadir"] + "/credentials")
    r["other_task"] = try_read(event["other_task"])
    r["proc1_environ"] = try_read("/proc/1/environ")
    r["write_task"] = try_write("/var/task/x")
    r["write_root"] = try_write("/x")
    r["write_etc"] = try_write("/etc/passwd")
    r["write_usr"] = try_write("/usr/x")
    r["write_tmp"] = try_write("/tmp/x")
    r["mount"] = call(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    r["umount"] = call(lambda: libc.umount2(b"/var/task", 2))
    r["ptrace"] = call(lambda: libc.ptrace(16, 1, 0, 0))
    r["unshare"] = call(lambda: libc.unshare(0x10000000))
    r["setns"] = call(lambda: libc.setns(0, 0))
    r["chroot"] = call(lambda: libc.chroot(b"/tmp"))
    r["init_module"] = call(lambda: libc.syscall(175, 0, 0, 0))
    r["bpf"] = call(lambda: libc.syscall(321, 0, 0, 0))
    r["kexec"] = call(lambda: libc.syscall(246, 0, 0, 0, 0))
    r["perf"] = call(lambda: libc.syscall(298, 0, 0, 0, 0, 0))
    r["reboot"] = call(lambda: libc.syscall(169, 0xFEE1DEAD, 672274793, 0x1234567, 0))
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        r["raw_socket"] = "ALLOWED"
    except OSError as e:
        r["raw_socket"] = err_name(e.errno)
    try:
        os.kill(event["host_pid"], 0)
        r["kill_host"] = "ALLOWED"
    except OSError as e:
        r["kill_host"] = err_name(e.errno)
    r["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    r["connect_host"] = connect("127.0.0.1", event["host_port"])
    r["connect_metadata"] = connect("169.254.169.254", 80)
    r["connect_peer"] = connect("127.0.0.1", 8080)
    r["task_root"] = os.environ.get("LAMBDA_TASK_ROOT")
    r["runtime_api"] = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    r["cwd"] = os.getcwd()
    return r


_listener = []


def listen(event):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 8080))
    s.listen(8)
    _listener.append(s)

    def serve():
        while True:
            c, _ = s.accept()
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return {"self": connect("127.0.0.1", 8080)}


def forkbomb(event):
    n = 0
    err = ""
    while n < 5000:
        try:
            pid = os.fork()
        except OSError as e:
            err = err_name(e.errno)
            break
        if pid == 0:
            # A small process, so the pids limit is hit before the memory one.
            try:
                os.execv("/bin/sleep", ["sleep", "30"])
            finally:
                os._exit(0)
        n += 1
    return {"forked": n, "error": err}


def membomb(event):
    hog = []
    while True:
        hog.append(bytearray(16 << 20))


def spin(event):
    while True:
        pass


def fill(event):
    written = 0
    chunk = b"\0" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as f:
            while written < (2 << 30):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        return {"written": written, "error": err_name(e.errno)}
    return {"written": written, "error": ""}


def child(event):
    p = subprocess.Popen(["/bin/sleep", event["marker"]], start_new_session=True)
    return {"child": p.pid}


def gateway():
    # The default route's gateway, from /proc/net/route (little-endian hex).
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[1] == "00000000":
                return socket.inet_ntoa(int(p[2], 16).to_bytes(4, "little"))
    return ""


def connects(event):
    # {"targets": {"name": [host, port]}}; host "gateway" is the default gateway.
    out = {}
    for name, (host, port) in event["targets"].items():
        if host == "gateway":
            host = gateway()
        out[name] = connect(host, port, event.get("timeout", 1)) if host else "NOROUTE"
    return out


def listen_any(event):
    # Listens on every address at port 8081 and says which one is its own.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8081))
    s.listen(8)
    _listener.append(s)

    def serve():
        while True:
            c, _ = s.accept()
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.connect(("192.0.2.1", 9))  # no packet is sent: picks the source address
        ip = u.getsockname()[0]
    except OSError as e:
        ip = err_name(e.errno)
    finally:
        u.close()
    return {"ip": ip, "self": connect(ip, 8081) if "." in ip else ip}


OPS = {"probe": probe, "listen": listen, "listen_any": listen_any, "connects": connects, "forkbomb": forkbomb, "membomb": membomb, "spin": spin, "fill": fill, "child": child}


def handler(event, context):
    return OPS[event["op"]](event)
