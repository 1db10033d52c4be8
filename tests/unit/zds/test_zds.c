#include "test.h"

#include "base/err.h"
#include "zds/zds.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct zt_zds_request make_add(void)
{
    struct zt_zds_request r;
    memset(&r, 0, sizeof(r));
    r.kind = ZT_ZDS_REQ_ADD;
    strcpy(r.uid, "1f3c-uid");
    r.has_info = true;
    strcpy(r.info.name, "web-0");
    strcpy(r.info.namespace, "shop");
    strcpy(r.info.service_account, "web");
    return r;
}

static void test_request_roundtrip(void)
{
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;
    struct zt_zds_request in = make_add(), out;

    CHECK_EQ_INT(zt_zds_request_encode(&in, buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(zt_zds_request_decode(buf, len, &out), 0);
    CHECK_EQ_INT(out.kind, ZT_ZDS_REQ_ADD);
    CHECK_EQ_STR(out.uid, "1f3c-uid");
    CHECK(out.has_info);
    CHECK_EQ_STR(out.info.name, "web-0");
    CHECK_EQ_STR(out.info.namespace, "shop");
    CHECK_EQ_STR(out.info.service_account, "web");

    enum zt_zds_req_kind kinds[] = {ZT_ZDS_REQ_DEL, ZT_ZDS_REQ_KEEP, ZT_ZDS_REQ_SNAPSHOT_SENT};
    for (int i = 0; i < 3; i++) {
        in.kind = kinds[i];
        CHECK_EQ_INT(zt_zds_request_encode(&in, buf, sizeof(buf), &len), 0);
        CHECK_EQ_INT(zt_zds_request_decode(buf, len, &out), 0);
        CHECK_EQ_INT(out.kind, kinds[i]);
        CHECK_EQ_STR(out.uid, kinds[i] == ZT_ZDS_REQ_SNAPSHOT_SENT ? "" : "1f3c-uid");
        CHECK(!out.has_info);
    }
}

/* Wire bytes fixed by the field numbers of wire facts 5.2. */
static void test_wire_bytes(void)
{
    uint8_t buf[64];
    size_t len;
    struct zt_zds_request r;
    memset(&r, 0, sizeof(r));

    r.kind = ZT_ZDS_REQ_DEL; /* WorkloadRequest.del=2 { DelWorkload.uid=2 "ab" } */
    strcpy(r.uid, "ab");
    CHECK_EQ_INT(zt_zds_request_encode(&r, buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(len, 6);
    CHECK(memcmp(buf,
                 "\x12\x04\x12\x02"
                 "ab",
                 6) == 0);

    r.kind = ZT_ZDS_REQ_KEEP; /* keep=5 { uid=1 } */
    CHECK_EQ_INT(zt_zds_request_encode(&r, buf, sizeof(buf), &len), 0);
    CHECK(len == 6 && memcmp(buf,
                             "\x2a\x04\x0a\x02"
                             "ab",
                             6) == 0);

    r.kind = ZT_ZDS_REQ_SNAPSHOT_SENT; /* snapshot_sent=3 {} */
    CHECK_EQ_INT(zt_zds_request_encode(&r, buf, sizeof(buf), &len), 0);
    CHECK(len == 2 && memcmp(buf, "\x1a\x00", 2) == 0);

    CHECK_EQ_INT(zt_zds_hello_encode(buf, sizeof(buf), &len), 0); /* version=1 V1 */
    CHECK(len == 2 && memcmp(buf, "\x08\x01", 2) == 0);

    CHECK_EQ_INT(zt_zds_ack_encode(NULL, buf, sizeof(buf), &len), 0); /* ack=1 {} */
    CHECK(len == 2 && memcmp(buf, "\x0a\x00", 2) == 0);
    CHECK_EQ_INT(zt_zds_ack_encode("no", buf, sizeof(buf), &len), 0);
    CHECK(len == 6 && memcmp(buf, "\x0a\x04\x0a\x02no", 6) == 0);
}

static void test_ack_hello_decode(void)
{
    uint8_t buf[ZT_ZDS_MSG_MAX];
    char err[16];
    size_t len;
    int v = 0;

    CHECK_EQ_INT(zt_zds_ack_encode("failed to start proxy", buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(zt_zds_ack_decode(buf, len, err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "failed to start"); /* truncated to the caller's buffer */
    CHECK_EQ_INT(zt_zds_ack_encode("", buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(zt_zds_ack_decode(buf, len, err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "");
    /* WorkloadResponse without payload is not an ack. */
    CHECK_EQ_INT(zt_zds_ack_decode(buf, 0, err, sizeof(err)), ZT_E_PROTO);
    CHECK_EQ_INT(zt_zds_hello_encode(buf, sizeof(buf), &len), 0);
    CHECK_EQ_INT(zt_zds_hello_decode(buf, len, &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(zt_zds_hello_decode((const uint8_t *)"\x08", 1, &v), ZT_E_PROTO);
}

static void test_bad_input(void)
{
    uint8_t buf[ZT_ZDS_MSG_MAX + 8];
    struct zt_zds_request in = make_add(), out;
    size_t len;

    CHECK_EQ_INT(zt_zds_request_encode(&in, buf, sizeof(buf), &len), 0);
    /* Every truncation of a valid add is rejected (or decodes to a
     * message without its required parts). */
    for (size_t n = 0; n < len; n++)
        CHECK(zt_zds_request_decode(buf, n, &out) < 0);
    /* Empty message: no payload. */
    CHECK_EQ_INT(zt_zds_request_decode(buf, 0, &out), ZT_E_PROTO);
    /* Wrong wire type: field 1 (add) as varint instead of bytes. */
    CHECK_EQ_INT(zt_zds_request_decode((const uint8_t *)"\x08\x01", 2, &out), ZT_E_PROTO);
    /* DelWorkload uid as varint. */
    CHECK_EQ_INT(zt_zds_request_decode((const uint8_t *)"\x12\x02\x10\x01", 4, &out), ZT_E_PROTO);
    /* del with an empty uid. */
    CHECK_EQ_INT(zt_zds_request_decode((const uint8_t *)"\x12\x00", 2, &out), ZT_E_PROTO);
    /* Length prefix past the end. */
    CHECK_EQ_INT(zt_zds_request_decode((const uint8_t *)"\x12\x7f\x12", 3, &out), ZT_E_PROTO);
    /* Oversize datagram. */
    memset(buf, 0, sizeof(buf));
    CHECK_EQ_INT(zt_zds_request_decode(buf, ZT_ZDS_MSG_MAX, &out), ZT_E_TOO_BIG);
    /* A uid over the cap. */
    {
        uint8_t m[300];
        m[0] = 0x12;
        m[1] = 0x84; /* varint 132 */
        m[2] = 0x01;
        m[3] = 0x12;
        m[4] = 0x81; /* varint 129 */
        m[5] = 1;
        memset(m + 6, 'a', 129);
        CHECK_EQ_INT(zt_zds_request_decode(m, 6 + 129, &out), ZT_E_TOO_BIG);
    }
    /* add without workload_info decodes, flagged. */
    CHECK_EQ_INT(zt_zds_request_decode((const uint8_t *)"\x0a\x03\x0a\x01x", 5, &out), 0);
    CHECK(out.kind == ZT_ZDS_REQ_ADD && !out.has_info);
    /* The encoder refuses what the peer could not read. */
    in.kind = ZT_ZDS_REQ_ADD;
    memset(in.info.name, 'n', ZT_ZDS_NAME_MAX);
    memset(in.info.service_account, 's', ZT_ZDS_SA_MAX);
    memset(in.uid, 'u', ZT_ZDS_UID_MAX);
    CHECK_EQ_INT(zt_zds_request_encode(&in, buf, sizeof(buf), &len), 0);
    CHECK(len < ZT_ZDS_MSG_MAX);
    CHECK_EQ_INT(zt_zds_request_encode(&in, buf, 100, &len), ZT_E_TOO_BIG);
    in.has_info = false;
    CHECK_EQ_INT(zt_zds_request_encode(&in, buf, sizeof(buf), &len), ZT_E_PROTO);
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void test_fd_passing(void)
{
    int sv[2], ns, fd = -1;
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len = 0;

    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    CHECK(ns >= 0);
    CHECK_EQ_INT(zt_zds_netns_check(ns), 0);
    CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), -EAGAIN);
    CHECK_EQ_INT(zt_zds_send(sv[0], (const uint8_t *)"\x1a\x00", 2, ns), 0);
    CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), 0);
    CHECK_EQ_INT(len, 2);
    CHECK(fd >= 0 && fd != ns);
    CHECK(same_file(fd, ns));
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK_EQ_INT(zt_zds_netns_check(fd), 0);
    close(fd);

    /* No fd. */
    CHECK_EQ_INT(zt_zds_send(sv[0], (const uint8_t *)"\x08\x01", 2, -1), 0);
    CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), 0);
    CHECK_EQ_INT(fd, -1);

    /* Two fds: rejected, consumed, the next datagram still readable. */
    {
        int two[2] = {ns, ns};
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        union {
            struct cmsghdr a;
            char b[CMSG_SPACE(sizeof(two))];
        } ctl;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.b,
                            .msg_controllen = sizeof(ctl.b)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(two));
        memcpy(CMSG_DATA(c), two, sizeof(two));
        CHECK(sendmsg(sv[0], &mh, 0) == 1);
    }
    CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), ZT_E_PROTO);
    CHECK_EQ_INT(fd, -1);

    /* Oversize datagram: truncated -> rejected, consumed. */
    {
        uint8_t big[ZT_ZDS_MSG_MAX + 100];
        memset(big, 0, sizeof(big));
        CHECK(send(sv[0], big, sizeof(big), 0) == (ssize_t)sizeof(big));
        CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), ZT_E_TOO_BIG);
    }
    CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), -EAGAIN);

    /* A regular file is not a netns. */
    {
        int f = open("/proc/self/ns/net", O_RDONLY), reg = open("/dev/null", O_RDONLY);
        CHECK_EQ_INT(zt_zds_netns_check(reg), ZT_E_PROTO);
        close(f);
        close(reg);
    }
    close(sv[0]);
    CHECK_EQ_INT(zt_zds_recv(sv[1], buf, &len, &fd), ZT_E_CLOSED);
    close(sv[1]);
    close(ns);
}

/* Our own end of a socket pair: the peer is this process's uid. */
static void test_peer_check(void)
{
    uint32_t uid = 12345, me = (uint32_t)geteuid();
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CHECK_EQ_INT(zt_zds_peer_check(sv[0], me, &uid), 0); /* trusted uid (or root) */
    CHECK_EQ_INT(uid, me);
    if (me != 0) {
        CHECK_EQ_INT(zt_zds_peer_check(sv[0], 0, &uid), ZT_E_DENIED);
        CHECK_EQ_INT(uid, me);
    } else {
        CHECK_EQ_INT(zt_zds_peer_check(sv[0], 0, &uid), 0); /* root always */
    }
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ_INT(zt_zds_peer_check(sv[0], 0, &uid), -EBADF);
}

int main(void)
{
    RUN(test_request_roundtrip);
    RUN(test_wire_bytes);
    RUN(test_ack_hello_decode);
    RUN(test_bad_input);
    RUN(test_fd_passing);
    RUN(test_peer_check);
    return TEST_REPORT();
}
