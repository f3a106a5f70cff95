#!/usr/bin/env python3
"""Process model: a SIGKILLed worker is logged and respawned; a SIGSTOPped worker is caught by
the heartbeat watchdog and replaced; SIGTERM lets in-flight requests finish and exits 0."""

import os
import signal
import struct
import threading
import time

from harness import (BUSBAR_BIN, check, delta_text, eq, is_content_event, lane, mock_answer,
                     pid_alive, pool, proc_state, provider, run, scaled, wait_for)

HEARTBEAT_MS = 1000


def conf_for(m):
    return {
        'providers': {'mock': provider(m)},
        'models': {'good': lane('mock', 'm'),
                   'slowstream': lane('mock', 'm;delay=200;words=10'),
                   'slowfirst': lane('mock', 'm;slowfirst=1500')},
        'pools': {'p': pool(('good', 1))},
    }


def serving(bb, n=10):
    for i in range(n):
        r = bb.chat('p')
        eq(r.status, 200, 'request %d (body %r)' % (i, r.body[:200]))
        eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer')


def test_workers_count(ctx):
    m = ctx.mock()
    bb = ctx.busbar(conf_for(m), workers=3)
    w = bb.wait_workers(3)
    for pid in w:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv0 = f.read().split(b'\0')[0]
        check(os.path.basename(argv0.decode()).startswith('busbar'),
              'child %d is not a busbar worker: %r' % (pid, argv0))
    serving(bb, 6)


def test_sigkill_worker_respawned(ctx):
    m = ctx.mock()
    bb = ctx.busbar(conf_for(m), workers=2)
    seen = set(bb.wait_workers(2))
    for round_ in range(2):      # twice: crash-loop back-off must still respawn
        victim = sorted(seen & set(bb.workers()))[0]
        bb.allow_log(r'\b%d\b' % victim)   # the exit of a killed worker may be logged loudly
        os.kill(victim, signal.SIGKILL)
        bb.wait_log(r'\b%d\b' % victim, 10, 'the master to log the death of worker %d' % victim)
        now = bb.wait_workers(2, timeout=15, exclude=[victim])
        ctx.note('round %d: killed %d, workers now %s' % (round_ + 1, victim, now))
        seen |= set(now)
        serving(bb)
    eq(bb.proc.poll(), None, 'master still running')


def test_sigstop_watchdog(ctx):
    m = ctx.mock()
    bb = ctx.busbar(conf_for(m), workers=1,
                    env={'BUSBAR_HEARTBEAT_TIMEOUT_MS': str(HEARTBEAT_MS)})
    victim = bb.wait_workers(1)[0]
    serving(bb, 2)
    bb.allow_log(r'\b%d\b' % victim)
    t0 = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    try:
        wait_for(lambda: proc_state(victim) == 'T', 2, 'the worker to stop')
        new = bb.wait_workers(1, timeout=HEARTBEAT_MS / 1000.0 + 8, exclude=[victim])
        took = time.monotonic() - t0
        wait_for(lambda: not pid_alive(victim), 5, 'the stopped worker to be killed')
    finally:
        try:
            os.kill(victim, signal.SIGKILL)
        except OSError:
            pass
    ctx.note('watchdog replaced %d by %s after %.2fs' % (victim, new, took))
    check(took >= HEARTBEAT_MS / 1000.0 * 0.5,
          'replaced after %.2fs, well before the heartbeat timeout' % took)
    bb.wait_log(r'\b%d\b' % victim, 5, 'the master to log the watchdog kill of %d' % victim)
    serving(bb)


def test_sigterm_graceful(ctx):
    """SIGTERM while a slow stream and a slow non-stream request are in flight: both complete
    (the stream with [DONE]) and the master exits 0."""
    m = ctx.mock()
    bb = ctx.busbar(conf_for(m), workers=2)
    c, r = bb.stream('slowstream', timeout=20)
    eq(r.status, 200, 'stream status')
    evs = []
    it = r.events()
    for e in it:
        evs.append(e)
        if is_content_event(e):
            break
    result = {}

    def slow_nonstream():
        try:
            result['r'] = bb.chat('slowfirst', timeout=20)
        except Exception as e:  # reported below
            result['e'] = e
    t = threading.Thread(target=slow_nonstream, daemon=True)
    t.start()
    m.wait_attempts(lambda a: len(a) == 2, 5, 'both slow requests to reach the mock')
    t_term = time.monotonic()
    bb.kill(signal.SIGTERM)
    evs.extend(it)
    t.join(scaled(20))
    eq(r.end, 'complete', 'how the in-flight stream ended after SIGTERM')
    check(evs and evs[-1].data == '[DONE]', 'stream lacks [DONE] after SIGTERM: %r' % evs[-3:])
    eq(delta_text(evs), mock_answer(10), 'streamed text after SIGTERM')
    check('r' in result, 'non-stream request failed after SIGTERM: %r' % result.get('e'))
    eq(result['r'].status, 200, 'in-flight non-stream request status after SIGTERM')
    code = bb.stop(sig=None, timeout=15)
    took = time.monotonic() - t_term
    eq(code, 0, 'master exit code after SIGTERM')
    ctx.note('exit %.2fs after SIGTERM' % took)
    a = m.attempts()
    eq([x['outcome'] for x in a], ['ok', 'ok'], 'outcomes at the mock')


def test_sigterm_idle_exits_fast(ctx):
    m = ctx.mock()
    bb = ctx.busbar(conf_for(m), workers=2)
    serving(bb, 2)
    t0 = time.monotonic()
    code = bb.stop(timeout=10)
    took = time.monotonic() - t0
    eq(code, 0, 'exit code after SIGTERM')
    check(took < scaled(3.0), 'idle busbar took %.2fs to exit after SIGTERM' % took)


def elf_bind_now(path):
    """(BIND_NOW set, PT_GNU_RELRO present) for an ELF64 little-endian file."""
    with open(path, 'rb') as f:
        data = f.read()
    check(data[:4] == b'\x7fELF' and data[4] == 2 and data[5] == 1, '%s: not ELF64 LE' % path)
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    relro, dyn = False, None
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from('<IIQQQQ', data,
                                                                 phoff + i * phentsize)
        relro |= p_type == 0x6474e552  # PT_GNU_RELRO
        if p_type == 2:                # PT_DYNAMIC
            dyn = (p_offset, p_filesz)
    check(dyn is not None, '%s: no dynamic section' % path)
    now = False
    for off in range(dyn[0], dyn[0] + dyn[1], 16):
        tag, val = struct.unpack_from('<qQ', data, off)
        if tag == 0:
            break
        now |= tag == 24                               # DT_BIND_NOW
        now |= tag == 30 and bool(val & 0x8)           # DT_FLAGS: DF_BIND_NOW
        now |= tag == 0x6ffffffb and bool(val & 0x1)   # DT_FLAGS_1: DF_1_NOW
    return now, relro


def smaps_rollup(pid):
    out = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == 'kB':
                out[parts[0].rstrip(':')] = int(parts[1])
    return out


def test_full_relro(ctx):
    """busbar is linked -z relro -z now: every symbol is bound in the master before the first
    fork, so a worker never runs the dynamic linker to bind one lazily (that read ld.so's text
    and each library's symbol tables into every worker, about 0.8 MiB of its idle RSS)."""
    now, relro = elf_bind_now(BUSBAR_BIN)
    check(relro, '%s has no PT_GNU_RELRO segment' % BUSBAR_BIN)
    check(now, '%s is not linked with -z now (lazy binding)' % BUSBAR_BIN)
    m = ctx.mock()
    bb = ctx.busbar(conf_for(m), workers=1)
    w = bb.wait_workers(1)[0]
    time.sleep(scaled(0.5))
    mr, wr = smaps_rollup(bb.pid), smaps_rollup(w)
    ctx.note('idle RSS master %d kB (anonymous %d), worker %d kB (anonymous %d)'
             % (mr.get('Rss', 0), mr.get('Anonymous', 0), wr.get('Rss', 0),
                wr.get('Anonymous', 0)))


if __name__ == '__main__':
    run([test_workers_count, test_sigkill_worker_respawned, test_sigstop_watchdog,
         test_sigterm_graceful, test_sigterm_idle_exits_fast, test_full_relro])
