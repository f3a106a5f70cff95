#!/usr/bin/env python3
"""embed: turn a text file into a C header holding it as one string constant.

usage: embed.py INPUT OUTPUT SYMBOL
Used by meson (common/meson.build, master/meson.build) so the binaries carry schema.sql and
etc/prices.yaml and never read the source tree at run time.
"""
import os
import sys


def main():
    src, dst, sym = sys.argv[1:4]
    with open(src, 'rb') as f:
        data = f.read()
    lines = ['/* generated from %s by scripts/embed.py: do not edit */' % os.path.basename(src),
             'static const char %s[] =' % sym]
    for chunk in data.splitlines(keepends=True) or [b'']:
        esc = []
        for b in chunk:
            c = chr(b)
            if c == '\\':
                esc.append('\\\\')
            elif c == '"':
                esc.append('\\"')
            elif c == '\n':
                esc.append('\\n')
            elif c == '\t':
                esc.append('\\t')
            elif 32 <= b < 127:
                esc.append(c)
            else:
                esc.append('\\%03o' % b)
        lines.append('    "%s"' % ''.join(esc))
    lines.append('    ;')
    lines.append('#define %s_LEN (sizeof %s - 1)' % (sym.upper(), sym))
    tmp = dst + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(tmp, dst)


if __name__ == '__main__':
    main()
