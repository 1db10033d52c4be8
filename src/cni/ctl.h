/* Local control protocol between `ztunnel enroll|unenroll` and the node
 * agent: over $ZTUNNEL_CNI_DIR/agent.sock (SOCK_STREAM, mode 0600) the
 * client sends one JSON line and reads one JSON line back; the agent then
 * closes the connection.
 *   request: {"op":"enroll","uid":..,"netns":..,"name":..,"namespace":..,
 *             "service_account":..}   or   {"op":"unenroll","uid":..}
 *   reply:   {"ok":true|false,"message":..,"error":..,"proxy_error":..}
 * ok=false means nothing changed (error says why). ok=true with a non-empty
 * proxy_error means the pod is enrolled (or removed) but the proxy NACKed. */
#ifndef ZT_CNI_CTL_H
#define ZT_CNI_CTL_H

#include "cni/store.h"

#include <stdbool.h>

#define ZT_CNI_CTL_LINE_MAX 4096
#define ZT_CNI_CTL_TEXT_MAX 512

enum zt_cni_ctl_op { ZT_CNI_CTL_ENROLL = 1, ZT_CNI_CTL_UNENROLL = 2 };
const char *zt_cni_ctl_op_str(enum zt_cni_ctl_op op);

/* For enroll, pod.netns is what the user typed (NAME or path); the agent
 * resolves it. For unenroll only pod.uid is used. */
struct zt_cni_ctl_request {
    enum zt_cni_ctl_op op;
    struct zt_cni_pod pod;
};

struct zt_cni_ctl_reply {
    bool ok;
    char message[ZT_CNI_CTL_TEXT_MAX];
    char error[ZT_CNI_CTL_TEXT_MAX];
    char proxy_error[ZT_CNI_CTL_TEXT_MAX];
};

/* Encoders return a malloc'd JSON line ending in '\n' (caller frees). */
char *zt_cni_ctl_request_encode(const struct zt_cni_ctl_request *req);
char *zt_cni_ctl_reply_encode(const struct zt_cni_ctl_reply *rep);
/* Decoders take one line (with or without '\n'). Return 0, ZT_E_TOO_BIG, or
 * ZT_E_PROTO for bad JSON / unknown op / over-long fields. Field contents
 * are not validated here (zt_cni_pod_validate does). */
int zt_cni_ctl_request_decode(const char *line, size_t len, struct zt_cni_ctl_request *out);
int zt_cni_ctl_reply_decode(const char *line, size_t len, struct zt_cni_ctl_reply *out);

/* Blocking client: connects to `sock_path`, sends `req`, waits (up to
 * `timeout_ms`) for the reply. Returns 0 with `*rep` filled, -ENOENT or
 * -ECONNREFUSED when no agent listens, ZT_E_TIMEOUT, ZT_E_PROTO, -errno. */
int zt_cni_ctl_call(const char *sock_path, const struct zt_cni_ctl_request *req,
                    struct zt_cni_ctl_reply *rep, int timeout_ms);

#endif
