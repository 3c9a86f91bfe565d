// An LD_PRELOAD library that makes real system calls fail, for fault injection from
// outside the project's own FileSystem seam: the POSIX file system, SQLite's unix VFS and
// anything else in the process see the failure exactly as the kernel would report it.
//
//   LD_PRELOAD=libckpt_fault_preload.so CKPT_FAULT_CALL=fsync
//     CKPT_FAULT_PATH='*/checkpoint_epoch_2.pth.*.tmp' CKPT_FAULT_ERRNO=EIO program ...
//
// Environment (read once, at the first intercepted call):
//   CKPT_FAULT_CALL   comma-separated calls to fail. A family name covers its variants:
//                     open (open, open64, openat, openat64), read, pread (pread,
//                     pread64), write, pwrite (pwrite, pwrite64), fsync, fdatasync,
//                     rename (rename, renameat, renameat2), link (link, linkat), readdir (readdir,
//                     readdir64: a failure returns NULL with errno set), flock; an exact name
//                     ("pread64") only itself. Unset or empty: nothing is failed.
//   CKPT_FAULT_PATH   fnmatch(3) glob the call's path must match ('*' also matches '/':
//                     '*name*' is a substring match). For descriptor calls the path is
//                     readlink(/proc/self/fd/N); for rename and link, either name; relative names
//                     are made absolute. Unset: every path.
//   CKPT_FAULT_ERRNO  the errno to fail with: a name (EIO, ENOSPC, EACCES, ...) or a
//                     number. Default EIO.
//   CKPT_FAULT_NTH    the first matching call that fails, counted from 1. Default 1.
//   CKPT_FAULT_TIMES  how many matching calls fail from there on; 0 means all. Default 1.
//   CKPT_FAULT_QUIET  if set, injected failures are not reported on stderr (by default
//                     each one prints "ckpt_fault_preload: injected EIO into fsync(/p)").
//
// A failed call does nothing (no byte is written or read) and returns -1 with errno set.
// Only the calls above are intercepted, and only where they go through the dynamic
// linker: fortified variants (__read_chk) and calls inside libc itself are not seen.
//
// Under AddressSanitizer the sanitizer's runtime must come first in LD_PRELOAD
// (LD_PRELOAD=libasan.so.8:libckpt_fault_preload.so); dlsym(RTLD_NEXT) then finds
// ASan's interceptors, which call libc. This library is not instrumented itself.
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef struct {
  const char* name;
  int value;
} ErrnoName;

static const ErrnoName kErrnoNames[] = {
    {"EIO", EIO},         {"ENOSPC", ENOSPC},   {"EDQUOT", EDQUOT},   {"EACCES", EACCES},
    {"EPERM", EPERM},     {"EROFS", EROFS},     {"EFBIG", EFBIG},     {"ENOTDIR", ENOTDIR},
    {"EISDIR", EISDIR},   {"ENOENT", ENOENT},   {"EEXIST", EEXIST},   {"EBADF", EBADF},
    {"EINTR", EINTR},     {"EAGAIN", EAGAIN},   {"EINVAL", EINVAL},   {"EMFILE", EMFILE},
    {"ENFILE", ENFILE},   {"EXDEV", EXDEV},     {"ENAMETOOLONG", ENAMETOOLONG},
    {"ETIMEDOUT", ETIMEDOUT}, {"ENXIO", ENXIO}, {"EBUSY", EBUSY},   {"ENOLCK", ENOLCK},
    {"EOPNOTSUPP", EOPNOTSUPP}, {"EWOULDBLOCK", EWOULDBLOCK},
    {"EMLINK", EMLINK},   {"ENOSYS", ENOSYS},   {"ENOTSUP", ENOTSUP},
};

static struct {
  char calls[512];  // ",fsync,pread," : each entry surrounded by commas
  char path[PATH_MAX];
  int have_path;
  int error;
  long nth;
  long times;
  int quiet;
} config;

static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static atomic_long matching_calls;
// Set while this library runs its own helpers, so that nothing they call is intercepted.
static __thread int busy;

static int errno_from_name(const char* text) {
  for (size_t i = 0; i < sizeof kErrnoNames / sizeof kErrnoNames[0]; ++i) {
    if (strcmp(kErrnoNames[i].name, text) == 0) return kErrnoNames[i].value;
  }
  char* end = NULL;
  long value = strtol(text, &end, 10);
  if (end != text && *end == '\0' && value > 0) return (int)value;
  return EIO;
}

static const char* errno_name(int value) {
  for (size_t i = 0; i < sizeof kErrnoNames / sizeof kErrnoNames[0]; ++i) {
    if (kErrnoNames[i].value == value) return kErrnoNames[i].name;
  }
  return "errno";
}

static long long_from_env(const char* name, long fallback) {
  const char* text = getenv(name);
  if (text == NULL || *text == '\0') return fallback;
  return strtol(text, NULL, 10);
}

static void read_config(void) {
  const char* calls = getenv("CKPT_FAULT_CALL");
  if (calls != NULL && *calls != '\0') {
    snprintf(config.calls, sizeof config.calls, ",%s,", calls);
  }
  const char* path = getenv("CKPT_FAULT_PATH");
  if (path != NULL && *path != '\0') {
    snprintf(config.path, sizeof config.path, "%s", path);
    config.have_path = 1;
  }
  const char* error = getenv("CKPT_FAULT_ERRNO");
  config.error = error != NULL && *error != '\0' ? errno_from_name(error) : EIO;
  config.nth = long_from_env("CKPT_FAULT_NTH", 1);
  config.times = long_from_env("CKPT_FAULT_TIMES", 1);
  config.quiet = getenv("CKPT_FAULT_QUIET") != NULL;
}

static int call_selected(const char* name, const char* family) {
  pthread_once(&config_once, read_config);
  if (config.calls[0] == '\0') return 0;
  char needle[64];
  snprintf(needle, sizeof needle, ",%s,", name);
  if (strstr(config.calls, needle) != NULL) return 1;
  snprintf(needle, sizeof needle, ",%s,", family);
  return strstr(config.calls, needle) != NULL;
}

static void fd_path(int fd, char* out, size_t size) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, size - 1);
  out[n > 0 ? (size_t)n : 0] = '\0';
}

// `path` made absolute against `dirfd` (AT_FDCWD: the working directory).
static void absolute_path(int dirfd, const char* path, char* out, size_t size) {
  if (path == NULL) {
    out[0] = '\0';
    return;
  }
  if (path[0] == '/') {
    snprintf(out, size, "%s", path);
    return;
  }
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (getcwd(base, sizeof base) == NULL) base[0] = '\0';
  } else {
    fd_path(dirfd, base, sizeof base);
  }
  snprintf(out, size, "%s/%s", base, path);
}

static int path_selected(const char* path) {
  return !config.have_path || fnmatch(config.path, path, 0) == 0;
}

static ssize_t (*real_write_for_report)(int, const void*, size_t);

static void report(const char* name, const char* path, long number) {
  if (config.quiet) return;
  char line[PATH_MAX + 160];
  int n = snprintf(line, sizeof line, "ckpt_fault_preload: injected %s into %s(%s) [matching call %ld]\n",
                   errno_name(config.error), name, path, number);
  if (n < 0) return;
  if (real_write_for_report == NULL) real_write_for_report = dlsym(RTLD_NEXT, "write");
  if (real_write_for_report != NULL) real_write_for_report(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

// Counts a matching call and decides whether it fails. `path2` is rename's second name.
static int should_fail(const char* name, const char* family, const char* path, const char* path2) {
  if (busy || !call_selected(name, family)) return 0;
  if (!path_selected(path) && (path2 == NULL || !path_selected(path2))) return 0;
  long number = atomic_fetch_add(&matching_calls, 1) + 1;
  if (number < config.nth) return 0;
  if (config.times > 0 && number >= config.nth + config.times) return 0;
  busy = 1;
  report(name, path2 != NULL && !path_selected(path) ? path2 : path, number);
  busy = 0;
  return 1;
}

static int fd_should_fail(const char* name, const char* family, int fd) {
  if (busy || !call_selected(name, family)) return 0;
  char path[PATH_MAX];
  busy = 1;
  fd_path(fd, path, sizeof path);
  busy = 0;
  return should_fail(name, family, path, NULL);
}

static int at_should_fail(const char* name, const char* family, int dirfd, const char* path, int dirfd2,
                          const char* path2) {
  if (busy || !call_selected(name, family)) return 0;
  char first[PATH_MAX], second[PATH_MAX];
  busy = 1;
  absolute_path(dirfd, path, first, sizeof first);
  if (path2 != NULL) absolute_path(dirfd2, path2, second, sizeof second);
  busy = 0;
  return should_fail(name, family, first, path2 != NULL ? second : NULL);
}

// The next definition of `name` after this library: libc's, or a sanitizer's interceptor.
#define REAL(name)                         \
  static __typeof__(&name) real_##name;    \
  if (real_##name == NULL) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

// Fails the intercepted call: errno set, `result` (-1, or NULL for readdir) returned.
#define FAIL_WITH(result) \
  do {                    \
    errno = config.error; \
    return result;        \
  } while (0)
#define FAIL_WITH_ERRNO() FAIL_WITH(-1)

EXPORT int fsync(int fd) {
  REAL(fsync);
  if (fd_should_fail("fsync", "fsync", fd)) FAIL_WITH_ERRNO();
  return real_fsync(fd);
}

EXPORT int fdatasync(int fd) {
  REAL(fdatasync);
  if (fd_should_fail("fdatasync", "fdatasync", fd)) FAIL_WITH_ERRNO();
  return real_fdatasync(fd);
}

EXPORT int flock(int fd, int operation) {
  REAL(flock);
  if (fd_should_fail("flock", "flock", fd)) FAIL_WITH_ERRNO();
  return real_flock(fd, operation);
}

EXPORT ssize_t write(int fd, const void* buffer, size_t n) {
  REAL(write);
  if (fd_should_fail("write", "write", fd)) FAIL_WITH_ERRNO();
  return real_write(fd, buffer, n);
}

EXPORT ssize_t pwrite(int fd, const void* buffer, size_t n, off_t offset) {
  REAL(pwrite);
  if (fd_should_fail("pwrite", "pwrite", fd)) FAIL_WITH_ERRNO();
  return real_pwrite(fd, buffer, n, offset);
}

EXPORT ssize_t pwrite64(int fd, const void* buffer, size_t n, off64_t offset) {
  REAL(pwrite64);
  if (fd_should_fail("pwrite64", "pwrite", fd)) FAIL_WITH_ERRNO();
  return real_pwrite64(fd, buffer, n, offset);
}

EXPORT ssize_t read(int fd, void* buffer, size_t n) {
  REAL(read);
  if (fd_should_fail("read", "read", fd)) FAIL_WITH_ERRNO();
  return real_read(fd, buffer, n);
}

EXPORT ssize_t pread(int fd, void* buffer, size_t n, off_t offset) {
  REAL(pread);
  if (fd_should_fail("pread", "pread", fd)) FAIL_WITH_ERRNO();
  return real_pread(fd, buffer, n, offset);
}

EXPORT ssize_t pread64(int fd, void* buffer, size_t n, off64_t offset) {
  REAL(pread64);
  if (fd_should_fail("pread64", "pread", fd)) FAIL_WITH_ERRNO();
  return real_pread64(fd, buffer, n, offset);
}

EXPORT int rename(const char* from, const char* to) {
  REAL(rename);
  if (at_should_fail("rename", "rename", AT_FDCWD, from, AT_FDCWD, to)) FAIL_WITH_ERRNO();
  return real_rename(from, to);
}

EXPORT int renameat(int from_dir, const char* from, int to_dir, const char* to) {
  REAL(renameat);
  if (at_should_fail("renameat", "rename", from_dir, from, to_dir, to)) FAIL_WITH_ERRNO();
  return real_renameat(from_dir, from, to_dir, to);
}

EXPORT int link(const char* existing, const char* new_path) {
  REAL(link);
  if (at_should_fail("link", "link", AT_FDCWD, existing, AT_FDCWD, new_path)) FAIL_WITH_ERRNO();
  return real_link(existing, new_path);
}

EXPORT int linkat(int existing_dir, const char* existing, int new_dir, const char* new_path, int flags) {
  REAL(linkat);
  if (at_should_fail("linkat", "link", existing_dir, existing, new_dir, new_path)) FAIL_WITH_ERRNO();
  return real_linkat(existing_dir, existing, new_dir, new_path, flags);
}

EXPORT int renameat2(int from_dir, const char* from, int to_dir, const char* to, unsigned int flags) {
  REAL(renameat2);
  if (at_should_fail("renameat2", "rename", from_dir, from, to_dir, to)) FAIL_WITH_ERRNO();
  return real_renameat2(from_dir, from, to_dir, to, flags);
}

// open's mode argument exists only when the flags create a file.
static mode_t mode_argument(int flags, va_list args) {
  if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) return (mode_t)va_arg(args, int);
  return 0;
}

// The body of the open wrappers: the arguments after `flags` are the real call's ones
// before the flags; the mode is read only when the flags create a file.
#define OPEN_BODY(name, dirfd, path, flags, ...)                                    \
  REAL(name);                                                                       \
  va_list args;                                                                     \
  va_start(args, flags);                                                            \
  mode_t mode = mode_argument(flags, args);                                         \
  va_end(args);                                                                     \
  if (at_should_fail(#name, "open", dirfd, path, AT_FDCWD, NULL)) FAIL_WITH_ERRNO(); \
  return real_##name(__VA_ARGS__, flags, mode)

EXPORT int open(const char* path, int flags, ...) { OPEN_BODY(open, AT_FDCWD, path, flags, path); }

EXPORT int open64(const char* path, int flags, ...) { OPEN_BODY(open64, AT_FDCWD, path, flags, path); }

EXPORT int openat(int dirfd, const char* path, int flags, ...) { OPEN_BODY(openat, dirfd, path, flags, dirfd, path); }

EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
  OPEN_BODY(openat64, dirfd, path, flags, dirfd, path);
}

EXPORT struct dirent* readdir(DIR* dir) {
  REAL(readdir);
  if (fd_should_fail("readdir", "readdir", dirfd(dir))) FAIL_WITH(NULL);
  return real_readdir(dir);
}

EXPORT struct dirent64* readdir64(DIR* dir) {
  REAL(readdir64);
  if (fd_should_fail("readdir64", "readdir", dirfd(dir))) FAIL_WITH(NULL);
  return real_readdir64(dir);
}
