/*
 * tls: build the SSL_CTXs of one generation in the master, before fork (the workers inherit
 * them, session-ticket keys included, so a ticket issued by one worker resumes on another).
 * Master process only (and busbar -t).
 */
#ifndef BB_MASTER_TLS_H
#define BB_MASTER_TLS_H

#include <openssl/ssl.h>

#include "common/config.h"
#include "common/err.h"

/* Server context from conf->tls_*: TLS >= 1.2, ALPN http/1.1, certificate chain + key (checked
 * against each other), mTLS when tls_client_ca_file is set. NULL with err on any failure.
 * Caller frees with SSL_CTX_free. Call only when conf->tls_cert_file is set. */
SSL_CTX *bb_tls_server_ctx(const struct bb_conf *conf, struct bb_err *err);
/* Upstream client context: system trust store, SSL_VERIFY_PEER, TLS >= 1.2. */
SSL_CTX *bb_tls_client_ctx(struct bb_err *err);

#endif
