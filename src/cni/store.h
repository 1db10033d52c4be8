/* Enrollment store of the node agent: one JSON file per pod in
 * $ZTUNNEL_CNI_DIR/pods/<uid>.json, written atomically (temp + rename), so
 * an agent restart restores every enrollment. */
#ifndef ZT_CNI_STORE_H
#define ZT_CNI_STORE_H

#include "cni/netns.h"
#include "zds/zds.h"

#include <stddef.h>
#include <stdint.h>

/* One enrolled pod. `netns` is the resolved path it was enrolled with;
 * netns_dev/netns_ino identify that namespace (0 if unknown), so a path
 * that now names another namespace (PID reuse) is not trusted. */
struct zt_cni_pod {
    char uid[ZT_ZDS_UID_MAX + 1];
    char netns[ZT_CNI_NETNS_PATH_MAX + 1];
    struct zt_zds_workload_info info;
    uint64_t netns_dev, netns_ino;
};

/* True if `uid` is 1..128 bytes of [A-Za-z0-9._-] not starting with '.'
 * (it becomes a file name). */
bool zt_cni_uid_is_valid(const char *uid);

/* Checks every field: uid as above; name, namespace, service account
 * non-empty and within caps; netns an absolute path. Returns 0 or
 * ZT_E_CONFIG with a reason in `err`. */
int zt_cni_pod_validate(const struct zt_cni_pod *pod, char *err, size_t errcap);

/* JSON text of a pod record (malloc'd, caller frees), and back. Decode
 * returns 0, ZT_E_TOO_BIG (len > 64 KiB) or ZT_E_CONFIG (bad JSON, missing
 * or invalid field). */
char *zt_cni_store_encode(const struct zt_cni_pod *pod);
int zt_cni_store_decode(const char *text, size_t len, struct zt_cni_pod *out);

/* Creates `dir` (mode 0700) if missing. Returns 0 or -errno. */
int zt_cni_store_init(const char *dir);
/* Writes <dir>/<uid>.json atomically (fsync + rename). 0 or -errno. */
int zt_cni_store_write(const char *dir, const struct zt_cni_pod *pod);
/* Removes <dir>/<uid>.json. 0, -ENOENT, or -errno. */
int zt_cni_store_remove(const char *dir, const char *uid);

/* Called once per *.json file: `pod` is the record (borrowed) and err 0, or
 * pod NULL and err < 0 for a file that could not be read or decoded (the
 * file is left alone). */
typedef void zt_cni_store_load_cb(void *ud, const char *file, const struct zt_cni_pod *pod,
                                  int err);
/* Reads every record in `dir`. Returns 0 or -errno if `dir` cannot be read
 * (-ENOENT if it does not exist). */
int zt_cni_store_load(const char *dir, zt_cni_store_load_cb *cb, void *ud);

#endif
