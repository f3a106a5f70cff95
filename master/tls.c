/*
 * tls: SSL_CTX construction. Master process (and busbar -t); no shared state. OpenSSL error
 * queue text is folded into struct bb_err and the queue cleared, so nothing leaks into a
 * later, unrelated error report.
 */
#include "master/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/* The first (root-cause) OpenSSL error, appended to what, into err; clears the queue. */
static int ssl_fail(struct bb_err *err, const char *what)
{
    unsigned long first = ERR_get_error();
    ERR_clear_error();
    char buf[256] = "unknown error";
    if (first)
        ERR_error_string_n(first, buf, sizeof buf);
    return bb_err_set(err, "%s: %s", what, buf);
}

/* True when the first queued error says the key does not belong to the certificate. */
static int key_mismatch(void)
{
    unsigned long e = ERR_peek_error();
    return ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
}

/* The protocol name p (length n) when the client's ALPN list in[0..inlen) offers it. */
static const unsigned char *alpn_find(const unsigned char *in, unsigned int inlen, const char *p,
                                      unsigned int n)
{
    for (unsigned int i = 0; i < inlen; i += 1 + in[i])
        if (i + 1 + in[i] <= inlen && in[i] == n && memcmp(in + i + 1, p, n) == 0)
            return in + i + 1;
    return NULL;
}

/* ALPN: "h2" when the client offers it (the worker then speaks HTTP/2, worker/h2.c), else
 * "http/1.1"; otherwise carry on without ALPN (HTTP/1.1), so a client that offers neither
 * fails in its own way rather than at the handshake. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    const unsigned char *p = alpn_find(in, inlen, "h2", 2);
    *outlen = 2;
    if (!p) {
        p = alpn_find(in, inlen, "http/1.1", 8);
        *outlen = 8;
    }
    if (!p)
        return SSL_TLSEXT_ERR_NOACK;
    *out = p;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *bb_tls_server_ctx(const struct bb_conf *conf, struct bb_err *err)
{
    char what[1200];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_fail(err, "tls: SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_cert_file) != 1) {
        snprintf(what, sizeof what, "tls: cannot load certificate %s", conf->tls_cert_file);
        goto fail;
    }
    if (!conf->tls_key_file) {
        snprintf(what, sizeof what, "tls: cert_file %s has no key_file", conf->tls_cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key_file, SSL_FILETYPE_PEM) != 1) {
        if (key_mismatch())
            snprintf(what, sizeof what, "tls: private key %s does not match certificate %s",
                     conf->tls_key_file, conf->tls_cert_file);
        else
            snprintf(what, sizeof what, "tls: cannot load private key %s", conf->tls_key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "tls: private key %s does not match certificate %s",
                 conf->tls_key_file, conf->tls_cert_file);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (conf->tls_client_ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, conf->tls_client_ca_file, NULL) != 1) {
            snprintf(what, sizeof what, "tls: cannot load client CA %s", conf->tls_client_ca_file);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->tls_client_ca_file);
        if (!names) {
            snprintf(what, sizeof what, "tls: no CA names in %s", conf->tls_client_ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    /* Session resumption: the server-side cache (per worker) plus tickets (keys created here,
     * shared by every worker of the generation through fork). A session id context is
     * required once peer verification is on, or resumed handshakes fail. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static const unsigned char sid_ctx[] = "busbar";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
fail:
    ssl_fail(err, what);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *bb_tls_client_ctx(struct bb_err *err)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_fail(err, "tls: SSL_CTX_new (client)");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_fail(err, "tls: cannot load the system trust store");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}
