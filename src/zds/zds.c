/* ZDS codec on protobuf-c, plus SCM_RIGHTS datagram helpers. */
#include "zds/zds.h"

#include "base/err.h"
#include "proto/zds.pb-c.h"

#include <errno.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

typedef Istio__Workload__Zds__WorkloadRequest pb_request;
typedef Istio__Workload__Zds__WorkloadResponse pb_response;

const char *zt_zds_req_kind_str(enum zt_zds_req_kind kind)
{
    switch (kind) {
    case ZT_ZDS_REQ_ADD:
        return "add";
    case ZT_ZDS_REQ_DEL:
        return "del";
    case ZT_ZDS_REQ_SNAPSHOT_SENT:
        return "snapshot_sent";
    case ZT_ZDS_REQ_KEEP:
        return "keep";
    }
    return "unknown";
}

/* Packs `msg` after checking its size: the peer reads into 1024 bytes. */
static int pack_checked(const ProtobufCMessage *msg, uint8_t *buf, size_t cap, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n >= ZT_ZDS_MSG_MAX || n > cap)
        return ZT_E_TOO_BIG;
    *len = protobuf_c_message_pack(msg, buf);
    return 0;
}

int zt_zds_request_encode(const struct zt_zds_request *req, uint8_t *buf, size_t cap, size_t *len)
{
    pb_request r = ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__INIT;
    Istio__Workload__Zds__AddWorkload add = ISTIO__WORKLOAD__ZDS__ADD_WORKLOAD__INIT;
    Istio__Workload__Zds__WorkloadInfo info = ISTIO__WORKLOAD__ZDS__WORKLOAD_INFO__INIT;
    Istio__Workload__Zds__DelWorkload del = ISTIO__WORKLOAD__ZDS__DEL_WORKLOAD__INIT;
    Istio__Workload__Zds__KeepWorkload keep = ISTIO__WORKLOAD__ZDS__KEEP_WORKLOAD__INIT;
    Istio__Workload__Zds__SnapshotSent snap = ISTIO__WORKLOAD__ZDS__SNAPSHOT_SENT__INIT;
    /* protobuf-c wants non-const char *; it never writes through them. */
    char *uid = (char *)req->uid;

    if (req->kind != ZT_ZDS_REQ_SNAPSHOT_SENT && req->uid[0] == '\0')
        return ZT_E_PROTO;
    switch (req->kind) {
    case ZT_ZDS_REQ_ADD:
        if (!req->has_info)
            return ZT_E_PROTO;
        info.name = (char *)req->info.name;
        info.namespace_ = (char *)req->info.namespace;
        info.service_account = (char *)req->info.service_account;
        add.uid = uid;
        add.workload_info = &info;
        r.payload_case = ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_ADD;
        r.add = &add;
        break;
    case ZT_ZDS_REQ_DEL:
        del.uid = uid;
        r.payload_case = ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_DEL;
        r.del = &del;
        break;
    case ZT_ZDS_REQ_KEEP:
        keep.uid = uid;
        r.payload_case = ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_KEEP;
        r.keep = &keep;
        break;
    case ZT_ZDS_REQ_SNAPSHOT_SENT:
        r.payload_case = ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_SNAPSHOT_SENT;
        r.snapshot_sent = &snap;
        break;
    default:
        return ZT_E_PROTO;
    }
    return pack_checked(&r.base, buf, cap, len);
}

int zt_zds_ack_encode(const char *error, uint8_t *buf, size_t cap, size_t *len)
{
    pb_response r = ISTIO__WORKLOAD__ZDS__WORKLOAD_RESPONSE__INIT;
    Istio__Workload__Zds__Ack ack = ISTIO__WORKLOAD__ZDS__ACK__INIT;
    char text[ZT_ZDS_ERROR_MAX + 1];

    text[0] = '\0';
    if (error) {
        size_t n = strnlen(error, ZT_ZDS_ERROR_MAX);
        memcpy(text, error, n);
        text[n] = '\0';
    }
    ack.error = text;
    r.payload_case = ISTIO__WORKLOAD__ZDS__WORKLOAD_RESPONSE__PAYLOAD_ACK;
    r.ack = &ack;
    return pack_checked(&r.base, buf, cap, len);
}

int zt_zds_hello_encode(uint8_t *buf, size_t cap, size_t *len)
{
    Istio__Workload__Zds__ZdsHello h = ISTIO__WORKLOAD__ZDS__ZDS_HELLO__INIT;
    h.version = ISTIO__WORKLOAD__ZDS__VERSION__V1;
    return pack_checked(&h.base, buf, cap, len);
}

/* Copies a decoded string into a fixed field, refusing anything over `max`. */
static int copy_field(char *dst, size_t max, const char *src)
{
    size_t n;
    if (!src)
        src = "";
    n = strnlen(src, max + 1);
    if (n > max)
        return ZT_E_TOO_BIG;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

int zt_zds_request_decode(const uint8_t *buf, size_t len, struct zt_zds_request *out)
{
    pb_request *r;
    const char *uid = NULL;
    int rc = 0;

    if (len >= ZT_ZDS_MSG_MAX)
        return ZT_E_TOO_BIG;
    memset(out, 0, sizeof(*out));
    r = istio__workload__zds__workload_request__unpack(NULL, len, buf);
    if (!r)
        return ZT_E_PROTO;
    switch (r->payload_case) {
    case ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_ADD:
        out->kind = ZT_ZDS_REQ_ADD;
        uid = r->add->uid;
        if (r->add->workload_info) {
            const Istio__Workload__Zds__WorkloadInfo *wi = r->add->workload_info;
            out->has_info = true;
            if ((rc = copy_field(out->info.name, ZT_ZDS_NAME_MAX, wi->name)) < 0 ||
                (rc = copy_field(out->info.namespace, ZT_ZDS_NAMESPACE_MAX, wi->namespace_)) < 0 ||
                (rc = copy_field(out->info.service_account, ZT_ZDS_SA_MAX, wi->service_account)) <
                    0)
                goto out;
        }
        break;
    case ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_DEL:
        out->kind = ZT_ZDS_REQ_DEL;
        uid = r->del->uid;
        break;
    case ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_KEEP:
        out->kind = ZT_ZDS_REQ_KEEP;
        uid = r->keep->uid;
        break;
    case ISTIO__WORKLOAD__ZDS__WORKLOAD_REQUEST__PAYLOAD_SNAPSHOT_SENT:
        out->kind = ZT_ZDS_REQ_SNAPSHOT_SENT;
        break;
    default:
        rc = ZT_E_PROTO;
        goto out;
    }
    if (out->kind != ZT_ZDS_REQ_SNAPSHOT_SENT) {
        if ((rc = copy_field(out->uid, ZT_ZDS_UID_MAX, uid)) < 0)
            goto out;
        if (out->uid[0] == '\0')
            rc = ZT_E_PROTO;
    }
out:
    istio__workload__zds__workload_request__free_unpacked(r, NULL);
    return rc;
}

int zt_zds_ack_decode(const uint8_t *buf, size_t len, char *error, size_t error_cap)
{
    pb_response *r;
    int rc = 0;

    if (len >= ZT_ZDS_MSG_MAX)
        return ZT_E_TOO_BIG;
    r = istio__workload__zds__workload_response__unpack(NULL, len, buf);
    if (!r)
        return ZT_E_PROTO;
    if (r->payload_case != ISTIO__WORKLOAD__ZDS__WORKLOAD_RESPONSE__PAYLOAD_ACK) {
        rc = ZT_E_PROTO;
        goto out;
    }
    if (error_cap > 0) {
        const char *e = r->ack->error ? r->ack->error : "";
        size_t n = strnlen(e, error_cap - 1);
        memcpy(error, e, n);
        error[n] = '\0';
    }
out:
    istio__workload__zds__workload_response__free_unpacked(r, NULL);
    return rc;
}

int zt_zds_hello_decode(const uint8_t *buf, size_t len, int *version)
{
    Istio__Workload__Zds__ZdsHello *h;

    if (len >= ZT_ZDS_MSG_MAX)
        return ZT_E_TOO_BIG;
    h = istio__workload__zds__zds_hello__unpack(NULL, len, buf);
    if (!h)
        return ZT_E_PROTO;
    *version = (int)h->version;
    istio__workload__zds__zds_hello__free_unpacked(h, NULL);
    return 0;
}

int zt_zds_send(int sock, const uint8_t *buf, size_t len, int pass_fd)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    if (pass_fd >= 0) {
        struct cmsghdr *c;
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    do {
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    /* SEQPACKET sends whole records or fails. */
    return (size_t)n == len ? 0 : -EMSGSIZE;
}

/* Closes every fd carried by SCM_RIGHTS messages in `mh`. */
static void close_passed_fds(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(fd);
        }
    }
}

int zt_zds_recv(int sock, uint8_t *buf, size_t *len, int *fd_out)
{
    struct iovec iov = {.iov_base = buf, .iov_len = ZT_ZDS_MSG_MAX};
    /* Room for a few fds so that "more than one fd" is seen and closed
     * rather than silently truncated away by the kernel. */
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(8 * sizeof(int))];
    } ctl;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    int nfds = 0, fd = -1, rc = 0;

    *fd_out = -1;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (mh.msg_flags & MSG_CTRUNC) {
        rc = ZT_E_PROTO;
        goto fail;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            rc = ZT_E_PROTO;
            goto fail;
        }
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (k >= 1)
            memcpy(&fd, CMSG_DATA(c), sizeof(int));
        nfds += (int)k;
    }
    if (nfds > 1) {
        rc = ZT_E_PROTO;
        goto fail;
    }
    if (mh.msg_flags & MSG_TRUNC) {
        rc = ZT_E_TOO_BIG;
        goto fail;
    }
    if (n == 0 && nfds == 0)
        return ZT_E_CLOSED;
    *len = (size_t)n;
    *fd_out = nfds == 1 ? fd : -1;
    return 0;
fail:
    close_passed_fds(&mh);
    return rc;
}

int zt_zds_netns_check(int fd)
{
    struct statfs sfs;
    int t = ioctl(fd, NS_GET_NSTYPE);

    if (t >= 0)
        return t == CLONE_NEWNET ? 0 : ZT_E_PROTO;
    if (errno != ENOTTY && errno != EINVAL)
        return ZT_E_PROTO;
    /* Old kernel: accept what could be a namespace file at all. */
    if (fstatfs(fd, &sfs) < 0)
        return -errno;
    if (sfs.f_type == (typeof(sfs.f_type))NSFS_MAGIC || sfs.f_type == PROC_SUPER_MAGIC)
        return 0;
    return ZT_E_PROTO;
}

int zt_zds_netns_id(int fd, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

int zt_zds_peer_check(int sock, uint32_t trusted_uid, uint32_t *peer_uid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    if (len != sizeof(cred))
        return -EINVAL;
    *peer_uid = (uint32_t)cred.uid;
    return cred.uid == 0 || cred.uid == trusted_uid ? 0 : ZT_E_DENIED;
}
