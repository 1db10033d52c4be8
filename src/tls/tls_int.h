/* Helpers shared inside src/tls only. */
#ifndef ZT_TLS_INT_H
#define ZT_TLS_INT_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

/* Reads every certificate of a PEM buffer (at most `max`). Returns 0 with a
 * non-empty stack the caller frees with sk_X509_pop_free(.., X509_free),
 * ZT_E_TLS if nothing parsed or a block is damaged, ZT_E_TOO_BIG over max. */
int zt_tls_read_pem_certs(const char *pem, size_t len, int max, STACK_OF(X509) * *out);

/* True if x is self-issued and its signature verifies with its own key. */
bool zt_tls_is_self_signed(X509 *x);

#endif
