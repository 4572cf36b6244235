/*
 * emdb's own native addon: the two things Node 20 cannot do from JavaScript.
 *
 *  - flock(2): an exclusive lock on the database's lock file that the kernel drops when the
 *    process dies, so a killed process never leaves a lock that blocks the next open.
 *    flock locks belong to an open file description, so a second open() of the same file in
 *    the same process cannot take the lock either.
 *  - mmap(2) with 64-bit lengths and offsets (mmap-io parses both as a 32-bit int and so
 *    cannot reach a byte past 2 GiB of a file), shared or private (copy-on-write).
 *
 * Plain C against Node-API only (no node-addon-api, no C++), so building it needs just a C
 * compiler and Node's headers, and one binary works on every Node with Node-API 8.
 *
 * Errors thrown for a failed system call look like Node's own fs errors: an Error whose
 * `code` is the errno name ("EBADF"), with `errno` (negative, as in Node) and `syscall`.
 */
#define _FILE_OFFSET_BITS 64
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif

#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

/* Bumped whenever the JS-visible surface changes, so the loader can refuse a stale build. */
#define EMDB_NATIVE_ABI 2

/* Marks the Buffers this addon made with mmap, so msync/madvise never act on ordinary heap
 * memory (madvise(MADV_DONTNEED) on a private heap page would silently zero it). */
static const napi_type_tag MAPPING_TAG = {0x656d6462u /* "emdb" */, 0x6d6d6170u /* "mmap" */};

static long page_size = 0;

#define MAX_SAFE_INTEGER 9007199254740991.0

static const char *errno_name(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
#if defined(EWOULDBLOCK) && EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK: return "EWOULDBLOCK";
#endif
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ETXTBSY: return "ETXTBSY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENOLCK: return "ENOLCK";
    case ENOSYS: return "ENOSYS";
    case EOVERFLOW: return "EOVERFLOW";
    case EOPNOTSUPP: return "EOPNOTSUPP";
#if defined(ENOTSUP) && ENOTSUP != EOPNOTSUPP
    case ENOTSUP: return "ENOTSUP";
#endif
    default: return NULL;
  }
}

/* Throws an Error for a failed system call. Returns NULL so callers can `return throw_...`. */
static napi_value throw_errno(napi_env env, const char *syscall, int err) {
  char code_buf[32];
  const char *code = errno_name(err);
  if (code == NULL) {
    snprintf(code_buf, sizeof code_buf, "ERRNO_%d", err);
    code = code_buf;
  }
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s (%s)", syscall, code, strerror(err));

  napi_value js_code, js_msg, error, js_errno, js_syscall;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg) != napi_ok ||
      napi_create_error(env, js_code, js_msg, &error) != napi_ok) {
    napi_throw_error(env, code, msg);
    return NULL;
  }
  if (napi_create_int32(env, -err, &js_errno) == napi_ok) {
    napi_set_named_property(env, error, "errno", js_errno);
  }
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &js_syscall) == napi_ok) {
    napi_set_named_property(env, error, "syscall", js_syscall);
  }
  napi_throw(env, error);
  return NULL;
}

/* A Node-API call itself failed (out of memory, a pending exception): report it as it is. */
static napi_value throw_napi(napi_env env, const char *what) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  const napi_extended_error_info *info = NULL;
  char msg[256];
  napi_get_last_error_info(env, &info);
  snprintf(msg, sizeof msg, "%s: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "Node-API error");
  napi_throw_error(env, "EMDB_NATIVE", msg);
  return NULL;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi(env, "napi_get_cb_info");
    return false;
  }
  if (argc < want) {
    char msg[64];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", want, argc);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return true;
}

/* A non-negative integer up to 2^53 - 1: the widest range a JS number holds exactly. Read as
 * a double first, because napi_get_value_int64 silently truncates 1.5 and maps NaN to 0. */
static bool get_uint53(napi_env env, napi_value value, const char *name, int64_t *out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (!(d >= 0 && d <= MAX_SAFE_INTEGER) || (double)(int64_t)d != d) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a safe non-negative integer", name);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  if (napi_get_value_int64(env, value, out) != napi_ok) {
    throw_napi(env, "napi_get_value_int64");
    return false;
  }
  return true;
}

static bool get_fd(napi_env env, napi_value value, int *out) {
  int64_t v;
  if (!get_uint53(env, value, "fd", &v)) return false;
  if (v > INT32_MAX) {
    napi_throw_range_error(env, NULL, "fd is out of range");
    return false;
  }
  *out = (int)v;
  return true;
}

static bool get_bool(napi_env env, napi_value value, const char *name, bool *out) {
  if (napi_get_value_bool(env, value, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a boolean", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return true;
}

/* The data and length of a Buffer this addon mapped; anything else is a TypeError. */
static bool get_mapping(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_mapping = false;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_object ||
      napi_check_object_type_tag(env, value, &MAPPING_TAG, &is_mapping) != napi_ok ||
      !is_mapping) {
    napi_throw_type_error(env, NULL, "expected a Buffer returned by mmap() (not a subarray)");
    return false;
  }
  void *p = NULL;
  if (napi_get_buffer_info(env, value, &p, length) != napi_ok) {
    throw_napi(env, "napi_get_buffer_info");
    return false;
  }
  *data = p;
  return true;
}

/* flock(fd, exclusive, nonBlocking): true when taken, false when a non-blocking request
 * would have to wait (EWOULDBLOCK); any other failure throws. */
static napi_value Flock(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  bool exclusive, non_blocking;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) ||
      !get_bool(env, argv[1], "exclusive", &exclusive) ||
      !get_bool(env, argv[2], "nonBlocking", &non_blocking)) {
    return NULL;
  }
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (non_blocking ? LOCK_NB : 0);
  int rc;
  do {
    rc = flock(fd, op);
  } while (rc != 0 && errno == EINTR);
  napi_value result;
  if (rc != 0) {
    if (errno != EWOULDBLOCK && errno != EAGAIN) return throw_errno(env, "flock", errno);
    napi_get_boolean(env, false, &result);
    return result;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

static napi_value Funlock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return NULL;
  int rc;
  do {
    rc = flock(fd, LOCK_UN);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return throw_errno(env, "flock(LOCK_UN)", errno);
  return NULL;
}

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/* Maps `length` bytes of `fd` at `offset` as an external Buffer, checking the arguments
 * (argv[0..2]) as mmap() and mmapPrivate() share them.
 *
 * There is deliberately no munmap(): JS views (subarrays) of the Buffer would keep pointing
 * at unmapped memory and crash the process when touched. The mapping is released when the
 * Buffer and every view of it have been garbage-collected. No napi_adjust_external_memory on
 * top: V8 already counts an external Buffer's length as external memory, so mapping large
 * windows does prompt collections (one mark-compact per few hundred MiB newly mapped), which
 * is what frees superseded mappings in time. */
static napi_value map_file(napi_env env, napi_value *argv, int prot, int flags) {
  int fd;
  int64_t length, offset;
  if (!get_fd(env, argv[0], &fd) || !get_uint53(env, argv[1], "length", &length) ||
      !get_uint53(env, argv[2], "offset", &offset)) {
    return NULL;
  }
  if (length == 0) {
    napi_throw_range_error(env, NULL, "length must be greater than 0");
    return NULL;
  }
  if (offset % page_size != 0) {
    napi_throw_range_error(env, NULL, "offset must be a multiple of the page size");
    return NULL;
  }
  if ((uint64_t)length > SIZE_MAX) {
    napi_throw_range_error(env, NULL, "length does not fit in this platform's address space");
    return NULL;
  }
  void *p = mmap(NULL, (size_t)length, prot, flags, fd, (off_t)offset);
  if (p == MAP_FAILED) return throw_errno(env, "mmap", errno);

  napi_value buffer;
  if (napi_create_external_buffer(env, (size_t)length, p, finalize_mapping,
                                  (void *)(uintptr_t)length, &buffer) != napi_ok) {
    /* Node did not take ownership (too long for a Buffer, or external buffers disallowed). */
    munmap(p, (size_t)length);
    return throw_napi(env, "napi_create_external_buffer");
  }
  if (napi_type_tag_object(env, buffer, &MAPPING_TAG) != napi_ok) {
    /* The Buffer owns the mapping now; the finalizer will unmap it. */
    return throw_napi(env, "napi_type_tag_object");
  }
  return buffer;
}

/* mmap(fd, length, offset, writable): a MAP_SHARED mapping. */
static napi_value Mmap(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool writable;
  if (!get_args(env, info, 4, argv) || !get_bool(env, argv[3], "writable", &writable)) {
    return NULL;
  }
  return map_file(env, argv, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED);
}

/* mmapPrivate(fd, length, offset): a MAP_PRIVATE mapping, readable and writable. A page
 * shows the file's bytes until the first store into it, which gives the process its own
 * copy of that page: from then on, writes to the file no longer show through, nor does a
 * truncation below it (an untouched page past the end of the file raises SIGBUS). */
static napi_value MmapPrivate(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  return map_file(env, argv, PROT_READ | PROT_WRITE, MAP_PRIVATE);
}

/* msync(map, offset, length, sync): MS_SYNC waits for the write-back, MS_ASYNC only starts it. */
static napi_value Msync(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *data;
  size_t map_length;
  int64_t offset, length;
  bool sync;
  if (!get_args(env, info, 4, argv) || !get_mapping(env, argv[0], &data, &map_length) ||
      !get_uint53(env, argv[1], "offset", &offset) ||
      !get_uint53(env, argv[2], "length", &length) ||
      !get_bool(env, argv[3], "sync", &sync)) {
    return NULL;
  }
  if (offset % page_size != 0) {
    napi_throw_range_error(env, NULL, "offset must be a multiple of the page size");
    return NULL;
  }
  if ((uint64_t)offset > map_length || (uint64_t)length > map_length - (uint64_t)offset) {
    napi_throw_range_error(env, NULL, "offset + length is beyond the mapping");
    return NULL;
  }
  if (msync(data + offset, (size_t)length, sync ? MS_SYNC : MS_ASYNC) != 0) {
    return throw_errno(env, "msync", errno);
  }
  return NULL;
}

/* madvise(map, advice) over the whole mapping. */
static napi_value Madvise(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint8_t *data;
  size_t map_length;
  int32_t advice;
  if (!get_args(env, info, 2, argv) || !get_mapping(env, argv[0], &data, &map_length)) {
    return NULL;
  }
  if (napi_get_value_int32(env, argv[1], &advice) != napi_ok) {
    napi_throw_type_error(env, NULL, "advice must be a number");
    return NULL;
  }
  switch (advice) {
    case MADV_NORMAL:
    case MADV_RANDOM:
    case MADV_SEQUENTIAL:
    case MADV_WILLNEED:
    case MADV_DONTNEED:
      break;
    default:
      napi_throw_range_error(env, NULL, "advice must be one of the exported MADV_* constants");
      return NULL;
  }
  if (madvise(data, map_length, advice) != 0) return throw_errno(env, "madvise", errno);
  return NULL;
}

static bool set_int(napi_env env, napi_value exports, const char *name, int64_t value) {
  napi_value v;
  return napi_create_int64(env, value, &v) == napi_ok &&
         napi_set_named_property(env, exports, name, v) == napi_ok;
}

static bool set_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok;
}

NAPI_MODULE_INIT() {
  if (page_size == 0) page_size = sysconf(_SC_PAGESIZE);
  if (page_size <= 0) {
    napi_throw_error(env, NULL, "sysconf(_SC_PAGESIZE) failed");
    return NULL;
  }
  if (!set_fn(env, exports, "flock", Flock) || !set_fn(env, exports, "funlock", Funlock) ||
      !set_fn(env, exports, "mmap", Mmap) || !set_fn(env, exports, "mmapPrivate", MmapPrivate) ||
      !set_fn(env, exports, "msync", Msync) ||
      !set_fn(env, exports, "madvise", Madvise) ||
      !set_int(env, exports, "ABI_VERSION", EMDB_NATIVE_ABI) ||
      !set_int(env, exports, "PAGE_SIZE", page_size) ||
      !set_int(env, exports, "MADV_NORMAL", MADV_NORMAL) ||
      !set_int(env, exports, "MADV_RANDOM", MADV_RANDOM) ||
      !set_int(env, exports, "MADV_SEQUENTIAL", MADV_SEQUENTIAL) ||
      !set_int(env, exports, "MADV_WILLNEED", MADV_WILLNEED) ||
      !set_int(env, exports, "MADV_DONTNEED", MADV_DONTNEED)) {
    return throw_napi(env, "emdb_native init");
  }
  return exports;
}
