/* Writes the ZDS seed corpus (fuzz/corpus/zds_request/) with the project's
 * own encoder, so seeds follow the wire format the codec speaks:
 *   build-fuzz/zds_seeds fuzz/corpus/zds_request      (make -f fuzz/build.mk seeds)
 * Not a fuzz target. */
#include "zds/zds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

static void put(const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_request(const char *name, enum zt_zds_req_kind kind, const char *uid,
                        const char *pod, const char *ns, const char *sa)
{
    struct zt_zds_request r;
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;

    memset(&r, 0, sizeof(r));
    r.kind = kind;
    snprintf(r.uid, sizeof(r.uid), "%s", uid);
    if (pod) {
        r.has_info = true;
        snprintf(r.info.name, sizeof(r.info.name), "%s", pod);
        snprintf(r.info.namespace, sizeof(r.info.namespace), "%s", ns);
        snprintf(r.info.service_account, sizeof(r.info.service_account), "%s", sa);
    }
    if (zt_zds_request_encode(&r, buf, sizeof(buf), &len) != 0) {
        fprintf(stderr, "encode %s failed\n", name);
        exit(1);
    }
    put(name, buf, len);
}

int main(int argc, char **argv)
{
    static const char uuid[] = "5f0c6a1e-2b7d-4c1e-9a55-0d3b2f7c9e41";
    char big[ZT_ZDS_SA_MAX + 1];
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    memset(big, 'a', ZT_ZDS_SA_MAX);
    big[ZT_ZDS_SA_MAX] = '\0';

    put_request("add", ZT_ZDS_REQ_ADD, uuid, "web-0", "shop", "web");
    put_request("add_empty_info", ZT_ZDS_REQ_ADD, uuid, "", "", "");
    put_request("add_max_fields", ZT_ZDS_REQ_ADD, uuid, big, "ns", big);
    put_request("del", ZT_ZDS_REQ_DEL, uuid, NULL, NULL, NULL);
    put_request("keep", ZT_ZDS_REQ_KEEP, uuid, NULL, NULL, NULL);
    put_request("snapshot_sent", ZT_ZDS_REQ_SNAPSHOT_SENT, "", NULL, NULL, NULL);
    if (zt_zds_ack_encode(NULL, buf, sizeof(buf), &len) != 0)
        return 1;
    put("ack_ok", buf, len);
    if (zt_zds_ack_encode("netns of pod not found", buf, sizeof(buf), &len) != 0)
        return 1;
    put("ack_error", buf, len);
    if (zt_zds_hello_encode(buf, sizeof(buf), &len) != 0)
        return 1;
    put("hello", buf, len);
    /* Near-valid: an add whose uid length byte claims more than is there. */
    put_request("truncated_add", ZT_ZDS_REQ_ADD, uuid, "web-0", "shop", "web");
    {
        char path[4096];
        FILE *f;
        snprintf(path, sizeof(path), "%s/truncated_add", dir);
        f = fopen(path, "rb");
        len = f ? fread(buf, 1, sizeof(buf), f) : 0;
        if (f)
            fclose(f);
        put("truncated_add", buf, len > 5 ? len - 5 : len);
    }
    return 0;
}
