#include "cmd/cmd.h"

#include <nghttp2/nghttp2.h>
#include <openssl/opensslv.h>
#include <stdio.h>
#include <uv.h>

int zt_cmd_version(int argc, char **argv)
{
    printf("ztunnel-c %s\n", ZT_VERSION);
    printf("  openssl %s, nghttp2 %s, libuv %s\n", OPENSSL_VERSION_TEXT,
           nghttp2_version(0)->version_str, uv_version_string());
    return 0;
}
