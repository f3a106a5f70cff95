#!/usr/bin/env python3
"""busbar -t: validation of good and bad configs, errors located as file:line:col."""

import os
import re
import socket

from harness import (TestFailure, check, eq, find_pos, run, validate, write_providers_file,
                     TEST_KEY_ENV)

GOOD = """\
listen: "127.0.0.1:{port}"
workers: 2
state_dir: "{tmp}/state"
admin:
  socket: "{tmp}/admin.sock"
auth:
  mode: none
log_level: info
providers:
  local:
    protocol: openai
    base_url: "http://127.0.0.1:9"
    api_key_env: {keyenv}
models:
  alpha:
    provider: local
    upstream_model: gpt-up
    max_concurrent: 10
    attempt_timeout_ms: 2000
  beta:
    provider: local
pools:
  fast:
    members:
      - target: alpha
        weight: 5
      - target: beta
        weight: 1
    route: weighted
    failover:
      max_hops: 1
      timeout_secs: 30
limits:
  request_body_max_bytes: 1048576
  header_timeout_ms: 5000
  drain_timeout_secs: 5
"""


def write(ctx, name, text):
    path = ctx.path(name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def setup(ctx, text, port=1):
    text = text.format(port=port, tmp=ctx.tmp, keyenv=TEST_KEY_ENV)
    cfg = write(ctx, 'config.yaml', text)
    prov = ctx.path('providers.yaml')
    write_providers_file(prov)
    return cfg, prov, text


def error_lines(out, cfg):
    """Lines of the form CONFIG:LINE:COL: message → [(line, col, msg)]."""
    rx = re.compile(r'^%s:(\d+):(\d+): (.+)$' % re.escape(cfg))
    res = []
    for ln in out.splitlines():
        m = rx.match(ln.strip())
        if m:
            res.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return res


def expect_error_at(errs, text, needle, msg_rx, what, nth=1):
    """Some error must sit on the line of needle ("key: value" or "key"), at the column of the
    key or of the value, with a message matching msg_rx."""
    line, col = find_pos(text, needle, nth)
    cols = {col}
    if ': ' in needle:
        cols.add(col + needle.index(': ') + 2)
    for (ln, c, msg) in errs:
        if ln == line and c in cols and re.search(msg_rx, msg, re.I):
            return
    raise TestFailure('%s: no error at line %d col %s matching /%s/; errors were:\n%s'
                      % (what, line, sorted(cols), msg_rx,
                         '\n'.join('%d:%d: %s' % e for e in errs) or '(none)'))


def test_good_config_ok(ctx):
    cfg, prov, _ = setup(ctx, GOOD)
    p = validate(cfg, prov)
    eq(p.returncode, 0, 'exit code of busbar -t on a good config (output %r)' % p.out[-800:])
    check('configuration OK' in p.out, 'no "configuration OK" in %r' % p.out[-800:])


def test_validate_does_not_bind(ctx):
    """-t touches nothing: it succeeds even when the listen port is taken."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(1)
    try:
        cfg, prov, _ = setup(ctx, GOOD, port=s.getsockname()[1])
        p = validate(cfg, prov)
        eq(p.returncode, 0, 'busbar -t with the listen port in use (output %r)' % p.out[-800:])
        check(not os.path.exists(os.path.join(ctx.tmp, 'admin.sock')),
              'busbar -t created the admin socket')
    finally:
        s.close()


def test_bad_references_all_reported(ctx):
    """Several independent errors: every one is reported with its own location."""
    bad = GOOD.replace('      - target: beta\n        weight: 1\n',
                       '      - target: nosuchlane\n        weight: 0\n')
    bad = bad.replace('  beta:\n    provider: local\n', '  beta:\n    provider: nosuchprov\n')
    cfg, prov, text = setup(ctx, bad)
    p = validate(cfg, prov)
    eq(p.returncode, 1, 'exit code of busbar -t on a bad config')
    errs = error_lines(p.out, cfg)
    check(errs, 'no file:line:col errors in output: %r' % p.out[-1500:])
    check('configuration OK' not in p.out, '"configuration OK" printed for a bad config')
    expect_error_at(errs, text, 'target: nosuchlane', r'nosuchlane|unknown|lane|model|target',
                    'dangling pool member')
    expect_error_at(errs, text, 'weight: 0', r'weight|>=|at least|positive|zero|must',
                    'weight 0')
    expect_error_at(errs, text, 'provider: nosuchprov', r'nosuchprov|provider',
                    'dangling provider')


def test_unknown_key_did_you_mean(ctx):
    bad = GOOD.replace('log_level: info\n', 'log_levle: info\n')
    cfg, prov, text = setup(ctx, bad)
    p = validate(cfg, prov)
    eq(p.returncode, 1, 'exit code with an unknown key')
    errs = error_lines(p.out, cfg)
    expect_error_at(errs, text, 'log_levle', r'log_levle', 'unknown key')
    check(any('log_level' in m.replace('log_levle', '') for (_, _, m) in errs),
          'no "did you mean log_level" hint in %r' % errs)


def test_security_section(ctx):
    """security: (SPEC §9) deny ranges and names, explicitly allowed names; every error
    located."""
    good = GOOD + 'security:\n  blocked_metadata_hosts: ["10.0.0.0/8", evil.example]\n' \
        '  allow_metadata_hosts: [metadata]\n'
    cfg, prov, text = setup(ctx, good)
    p = validate(cfg, prov)
    eq(p.returncode, 0, 'busbar -t with a good security section (output %r)' % p.out[-800:])
    bad = GOOD + 'security:\n  blocked_metadata_hosts: ["10.0.0.0/40"]\n' \
        '  allow_metadata_hosts: ["192.168.0.1"]\n  blocked_hosts: []\n'
    cfg, prov, text = setup(ctx, bad)
    p = validate(cfg, prov)
    eq(p.returncode, 1, 'exit code with a bad security section')
    errs = error_lines(p.out, cfg)
    expect_error_at(errs, text, '"10.0.0.0/40"', r'not a valid address or CIDR range',
                    'bad range')
    expect_error_at(errs, text, '"192.168.0.1"', r'is an address: list host names here',
                    'address in the allow list')
    expect_error_at(errs, text, 'blocked_hosts', r"unknown key 'blocked_hosts' in security",
                    'unknown key')


def test_cluster_section(ctx):
    """cluster: (SPEC §7) is checked without connecting: every error located; the password
    comes from the environment, never from the URL."""
    good = GOOD + ('cluster:\n  redis_url: "rediss://busbar@127.0.0.1:6390/2"\n'
                   '  key_prefix: "bb:"\n  on_redis_error: deny\n  node_id: n1\n'
                   '  timeout_ms: 20\n  password_env: BB_TEST_REDIS_PW\n')
    cfg, prov, text = setup(ctx, good)
    p = validate(cfg, prov, env={'BB_TEST_REDIS_PW': 'secret-pw'})
    eq(p.returncode, 0, 'busbar -t with a good cluster section (output %r)' % p.out[-800:])
    p = validate(cfg, prov)
    eq(p.returncode, 1, 'busbar -t with the password variable unset')
    check('cluster.password_env: the environment variable BB_TEST_REDIS_PW is not set' in p.out,
          'the unset password variable is named: %r' % p.out[-500:])
    check('secret-pw' not in validate(cfg, prov, env={'BB_TEST_REDIS_PW': 'secret-pw'}).out,
          'the password in the output')
    bad = GOOD + ('cluster:\n  redis_url: "redis://u:hunter2@127.0.0.1:6379/0"\n'
                  '  on_redis_error: maybe\n  timeout_ms: 0\n  lease_secs: 1\n'
                  '  node_id: "has space"\n  tls:\n    ca_file: nosuch.pem\n'
                  '  redis_ur: x\n')
    cfg, prov, text = setup(ctx, bad)
    p = validate(cfg, prov)
    eq(p.returncode, 1, 'exit code with a bad cluster section')
    errs = error_lines(p.out, cfg)
    expect_error_at(errs, text, 'redis_url: "redis://u:hunter2@127.0.0.1:6379/0"',
                    r'password must not be written in the URL.*password_env', 'password in URL')
    check(not any('hunter2' in m for (_, _, m) in errs), 'the password echoed in an error')
    expect_error_at(errs, text, 'on_redis_error: maybe', r'maybe', 'on_redis_error value')
    expect_error_at(errs, text, 'timeout_ms: 0', r'timeout_ms', 'timeout_ms range')
    expect_error_at(errs, text, 'lease_secs: 1', r'lease_secs', 'lease_secs range')
    expect_error_at(errs, text, 'node_id: "has space"', r'node_id', 'node_id')
    expect_error_at(errs, text, 'tls', r'only used with a rediss://', 'tls without rediss')
    expect_error_at(errs, text, 'ca_file: nosuch.pem', r'cannot read', 'missing ca_file')
    expect_error_at(errs, text, 'redis_ur: x', r'redis_url', 'unknown key with a hint')
    for url, why in (('http://127.0.0.1:6379', r'expected redis://'),
                     ('redis://127.0.0.1:99999', r'port'),
                     ('redis://127.0.0.1/16', r'database'),
                     ('redis://127.0.0.1:6379/0?x=1', r'unexpected text')):
        cfg, prov, text = setup(ctx, GOOD + 'cluster:\n  redis_url: "%s"\n' % url)
        errs = error_lines(validate(cfg, prov).out, cfg)
        expect_error_at(errs, text, 'redis_url: "%s"' % url, why, 'redis_url %s' % url)
    cfg, prov, text = setup(ctx, GOOD + 'cluster:\n  key_prefix: "x"\n')
    errs = error_lines(validate(cfg, prov).out, cfg)
    expect_error_at(errs, text, 'key_prefix: "x"', r'redis_url is required', 'cluster without a URL')


def test_yaml_syntax_error_located(ctx):
    bad = GOOD.replace('    upstream_model: gpt-up\n', '    upstream_model: [gpt-up\n')
    cfg, prov, text = setup(ctx, bad)
    p = validate(cfg, prov)
    eq(p.returncode, 1, 'exit code with a YAML syntax error')
    errs = error_lines(p.out, cfg)
    check(errs, 'YAML syntax error not reported as %s:LINE:COL: ... (output %r)'
          % (cfg, p.out[-800:]))
    first_bad = find_pos(text, '[gpt-up')[0]
    check(any(ln >= first_bad for (ln, _, _) in errs),
          'syntax error located before the bad line %d: %r' % (first_bad, errs))


def test_missing_file(ctx):
    prov = ctx.path('providers.yaml')
    write_providers_file(prov)
    p = validate(ctx.path('does-not-exist.yaml'), prov)
    eq(p.returncode, 1, 'exit code with a missing config file')
    check('does-not-exist.yaml' in p.out, 'error does not name the missing file: %r' % p.out)


if __name__ == '__main__':
    run([test_good_config_ok, test_validate_does_not_bind, test_bad_references_all_reported,
         test_unknown_key_did_you_mean, test_security_section, test_cluster_section,
         test_yaml_syntax_error_located, test_missing_file])
