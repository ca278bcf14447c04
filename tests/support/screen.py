"""What a person sees at the end of a terminal session: feeds a transcript
(bytes on stdin, escape codes and all) to pyte, a VT100/xterm emulator, and
prints the final screen, one line per row, trailing blanks dropped. Lets a
test check the picture a live display leaves behind rather than the raw
bytes that drew it.

usage: screen.py COLUMNS ROWS < transcript
"""
import sys

import pyte

columns, rows = int(sys.argv[1]), int(sys.argv[2])
screen = pyte.Screen(columns, rows)
stream = pyte.ByteStream(screen)
stream.feed(sys.stdin.buffer.read())
lines = [line.rstrip() for line in screen.display]
while lines and not lines[-1]:
    lines.pop()
print("\n".join(lines))
