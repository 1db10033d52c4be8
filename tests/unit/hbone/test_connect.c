/* HBONE CONNECT semantics over a real TLS + HTTP/2 session pair in memory
 * (no sockets): the server checks each request as the inbound proxy does
 * (zt_hbone_check_request) and the client sees the status it gets. */
#include "test.h"

#include "h2/session_pair.h"
#include "hbone/hbone.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static struct sockaddr_in accepted_on;

static int check_like_inbound(const struct zt_h2_request *req)
{
    struct zt_hbone_target target;
    const char *why = NULL;
    int status = zt_hbone_check_request(req->method, req->authority, &target, &why);
    if (status == 200)
        status = zt_hbone_check_target(&target, (struct sockaddr *)&accepted_on, false, &why);
    return status;
}

/* Opens a CONNECT for `authority` and returns the status it got. */
static int connect_status(struct sx_world *w, const char *authority, struct sx_stream **out)
{
    struct sx_stream *cs = sx_stream_slot(&w->cli);
    cs->id = zt_h2_session_connect(w->cli.s, authority, NULL, 0, &sx_stream_ops, cs);
    if (cs->id <= 0)
        return -1;
    sx_pump(w);
    *out = cs;
    return cs->response_calls == 1 ? cs->status : -1;
}

static void test_connect_statuses(void)
{
    accepted_on.sin_family = AF_INET;
    accepted_on.sin_port = htons(15008);
    inet_pton(AF_INET, "10.0.0.5", &accepted_on.sin_addr);
    struct sx_world w;
    sx_world_init(&w);
    w.srv.decide = check_like_inbound;
    sx_open_pair(&w, true);
    CHECK_EQ_INT(w.srv.ready_calls, 1);
    struct sx_stream *ok, *bad, *proxy_port, *foreign;
    /* A workload port on the address the connection came in on: tunnelled. */
    CHECK_EQ_INT(connect_status(&w, "10.0.0.5:8080", &ok), 200);
    CHECK_EQ_INT(ok->close_calls, 0);
    /* Garbage, the proxy's own ports, another address: refused, and only
     * that stream ends. */
    CHECK_EQ_INT(connect_status(&w, "no-port.example", &bad), 400);
    CHECK_EQ_INT(bad->close_calls, 1);
    CHECK_EQ_INT(connect_status(&w, "10.0.0.5:15008", &proxy_port), 503);
    CHECK_EQ_INT(proxy_port->close_calls, 1);
    CHECK_EQ_INT(connect_status(&w, "10.0.0.9:8080", &foreign), 400);
    CHECK_EQ_INT(foreign->close_calls, 1);
    /* An :authority HTTP/2 itself forbids (a space) never reaches the
     * check: the stream is reset, the connection lives on. */
    struct sx_stream *invalid;
    CHECK_EQ_INT(connect_status(&w, "10.0.0.5 8080", &invalid), -1);
    CHECK_EQ_INT(invalid->close_calls, 1);
    CHECK(invalid->close_err < 0);
    CHECK_EQ_INT(w.srv.nreq, 4);
    CHECK_EQ_INT(zt_h2_session_streams(w.srv.s), 1);
    /* The accepted tunnel still carries bytes both ways. */
    ok->to_send = 70000;
    zt_h2_session_resume(w.cli.s, ok->id);
    sx_pump(&w);
    CHECK_EQ_INT(w.srv.streams[0].received, 70000);
    CHECK_EQ_INT(w.cli.closed_calls + w.srv.closed_calls, 0);
    sx_world_free(&w);
}

int main(void)
{
    RUN(test_connect_statuses);
    return TEST_REPORT();
}
