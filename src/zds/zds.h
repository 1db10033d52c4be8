/* ZDS message codec and datagram helpers, shared by the node agent
 * (src/cni, the server) and the proxy's ZDS client (src/inpod).
 *
 * ZDS runs over a unix SOCK_SEQPACKET socket: one protobuf message per
 * datagram, no length prefix, every message below 1 KiB. The agent sends
 * WorkloadRequest (add / keep / del / snapshot_sent), the proxy answers each
 * with one WorkloadResponse{Ack}; an `add` carries the pod's network
 * namespace fd as SCM_RIGHTS ancillary data (wire facts, section 5).
 *
 * The encode/decode functions are sans-I/O: bytes in, plain structs out
 * (nothing allocated survives the call). The zt_zds_send/recv helpers are
 * the only code touching sockets; they work on blocking or nonblocking
 * sockets alike. */
#ifndef ZT_ZDS_ZDS_H
#define ZT_ZDS_ZDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Receive buffer size and exclusive upper bound of an encoded message. */
#define ZT_ZDS_MSG_MAX 1024
/* Field caps (bytes, without the NUL). Kubernetes limits: names are DNS
 * subdomains (253), namespaces DNS labels (63); pod UIDs are 36-byte UUIDs. */
#define ZT_ZDS_UID_MAX 128
#define ZT_ZDS_NAME_MAX 253
#define ZT_ZDS_NAMESPACE_MAX 63
#define ZT_ZDS_SA_MAX 253
/* Longest Ack.error we send; longer texts are truncated on encode. */
#define ZT_ZDS_ERROR_MAX 512

/* The pod's identity as the agent reports it (WorkloadInfo). */
struct zt_zds_workload_info {
    char name[ZT_ZDS_NAME_MAX + 1];
    char namespace[ZT_ZDS_NAMESPACE_MAX + 1];
    char service_account[ZT_ZDS_SA_MAX + 1];
};

enum zt_zds_req_kind {
    ZT_ZDS_REQ_ADD = 1,
    ZT_ZDS_REQ_DEL = 2,
    ZT_ZDS_REQ_SNAPSHOT_SENT = 3,
    ZT_ZDS_REQ_KEEP = 5
};
const char *zt_zds_req_kind_str(enum zt_zds_req_kind kind);

/* One WorkloadRequest. `uid` is set for add/keep/del; `has_info`/`info`
 * only for add (an add without workload_info decodes with has_info false:
 * rejecting it is the proxy's protocol decision, not the codec's). */
struct zt_zds_request {
    enum zt_zds_req_kind kind;
    char uid[ZT_ZDS_UID_MAX + 1];
    bool has_info;
    struct zt_zds_workload_info info;
};

/* Encoders write at most `cap` bytes into `buf` and the length to `*len`.
 * Return 0, ZT_E_TOO_BIG if the message would reach ZT_ZDS_MSG_MAX or not fit
 * `cap`, or ZT_E_PROTO for a request that cannot be expressed (bad kind,
 * empty uid, add without info). */
int zt_zds_request_encode(const struct zt_zds_request *req, uint8_t *buf, size_t cap, size_t *len);
/* `error` NULL or "" encodes a positive Ack; longer than ZT_ZDS_ERROR_MAX is
 * truncated. */
int zt_zds_ack_encode(const char *error, uint8_t *buf, size_t cap, size_t *len);
/* ZdsHello{version=V1}. */
int zt_zds_hello_encode(uint8_t *buf, size_t cap, size_t *len);

/* Decoders. Return 0; ZT_E_TOO_BIG if `len` >= ZT_ZDS_MSG_MAX or a string
 * exceeds its cap; ZT_E_PROTO for undecodable bytes (truncated, wrong wire
 * types) or a message without a payload / with an empty uid. */
int zt_zds_request_decode(const uint8_t *buf, size_t len, struct zt_zds_request *out);
/* Copies Ack.error (truncated to error_cap-1) into `error`; "" means success. */
int zt_zds_ack_decode(const uint8_t *buf, size_t len, char *error, size_t error_cap);
/* Stores the announced version (1 = V1; unknown values are passed through). */
int zt_zds_hello_decode(const uint8_t *buf, size_t len, int *version);

/* Sends one datagram; `pass_fd` >= 0 is attached with SCM_RIGHTS (borrowed,
 * not closed). MSG_NOSIGNAL: a dead peer gives -EPIPE, not SIGPIPE.
 * Returns 0, -EAGAIN, or another -errno. */
int zt_zds_send(int sock, const uint8_t *buf, size_t len, int pass_fd);

/* Receives one datagram into `buf` (ZT_ZDS_MSG_MAX bytes) with
 * MSG_CMSG_CLOEXEC. On success stores its length and `*fd_out` (the one
 * passed fd, owned by the caller, or -1). Returns 0; -EAGAIN; ZT_E_CLOSED on
 * end of stream; ZT_E_TOO_BIG if the datagram was truncated; ZT_E_PROTO for
 * truncated control data, more than one fd or foreign control messages. On
 * ZT_E_TOO_BIG/ZT_E_PROTO the datagram is consumed and any received fds are
 * closed, so the session may continue. Other -errno for socket errors. */
int zt_zds_recv(int sock, uint8_t *buf, size_t *len, int *fd_out);

/* Checks that `fd` is a network namespace: ioctl(NS_GET_NSTYPE) ==
 * CLONE_NEWNET, or, on kernels without that ioctl, fstatfs magic NSFS or
 * PROC. Returns 0 or ZT_E_PROTO (or -errno from fstat). */
int zt_zds_netns_check(int fd);

/* Identity of a namespace fd (st_dev, st_ino): equal ids = same netns. */
int zt_zds_netns_id(int fd, uint64_t *dev, uint64_t *ino);

/* Who is at the other end of a connected unix socket, from the kernel
 * (SO_PEERCRED: the credentials the peer had at connect() or listen()).
 * Both ends of ZDS, and the node agent's control socket, talk only to uid
 * 0 or `trusted_uid` (0 = root only). Stores the peer's uid in `*peer_uid`
 * and returns 0, ZT_E_DENIED for another uid, or -errno. */
int zt_zds_peer_check(int sock, uint32_t trusted_uid, uint32_t *peer_uid);

#endif
